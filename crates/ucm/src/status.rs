//! UCM status codes (spec §2.6). The numeric values are the wire contract.

/// A UCM API status. `0` is success, negative values are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Success,
    InvalidParameters,
    NeedAuthentication,
    CookieError,
    ConnectionClosed,
    SystemTimeout,
    AbnormalSystemError,
    InvalidValue,
    NoSuchItem,
    Unsupported,
    FailedToOperateData,
    FailedToUpdateData,
    FailedToGetData,
    DataModified,
    ItemExists,
    WrongAccountOrPassword,
    NoPermission,
    SensitiveCharacters,
    LoginRestriction,
    LoginForbidden,
}

impl Status {
    pub const fn code(self) -> i32 {
        match self {
            Status::Success => 0,
            Status::InvalidParameters => -1,
            Status::NeedAuthentication => -5,
            Status::CookieError => -6,
            Status::ConnectionClosed => -7,
            Status::SystemTimeout => -8,
            Status::AbnormalSystemError => -9,
            Status::InvalidValue => -15,
            Status::NoSuchItem => -16,
            Status::Unsupported => -19,
            Status::FailedToOperateData => -24,
            Status::FailedToUpdateData => -25,
            Status::FailedToGetData => -26,
            Status::DataModified => -43,
            Status::ItemExists => -44,
            Status::WrongAccountOrPassword => -37,
            Status::NoPermission => -47,
            Status::SensitiveCharacters => -50,
            Status::LoginRestriction => -68,
            Status::LoginForbidden => -70,
        }
    }

    /// The English text of the UCM error table, for logs.
    pub const fn message(self) -> &'static str {
        match self {
            Status::Success => "Success",
            Status::InvalidParameters => "Invalid parameters!",
            Status::NeedAuthentication => "Need authentication",
            Status::CookieError => "Cookie error",
            Status::ConnectionClosed => "Connection closed",
            Status::SystemTimeout => "System timeout",
            Status::AbnormalSystemError => "Abnormal system error",
            Status::InvalidValue => "Invalid value",
            Status::NoSuchItem => "No such item. Please refresh the page and try again",
            Status::Unsupported => "Unsupported",
            Status::FailedToOperateData => "Failed to operate data",
            Status::FailedToUpdateData => "Failed to update data",
            Status::FailedToGetData => "Failed to get data",
            Status::DataModified => "Some data has been modified or deleted; refresh and retry",
            Status::ItemExists => "This item has been added",
            Status::WrongAccountOrPassword => "Wrong account or password!",
            Status::NoPermission => "No permission",
            Status::SensitiveCharacters => "Command contains sensitive characters",
            Status::LoginRestriction => "Login Restriction",
            Status::LoginForbidden => "Login Forbidden",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_ucm_table() {
        assert_eq!(Status::Success.code(), 0);
        assert_eq!(Status::InvalidParameters.code(), -1);
        assert_eq!(Status::CookieError.code(), -6);
        assert_eq!(Status::WrongAccountOrPassword.code(), -37);
        assert_eq!(Status::NoPermission.code(), -47);
        assert_eq!(Status::SensitiveCharacters.code(), -50);
        assert_eq!(Status::LoginRestriction.code(), -68);
    }
}
