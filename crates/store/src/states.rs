//! Columns that hold one of a fixed set of words (a state, an outcome, a
//! kind) are enums in Rust and CHECK constraints in the database (migration
//! 0011). [`state_enum!`] writes the enum and its text both ways; a word read
//! from the database that the enum does not know is an [`Error`], never a
//! panic.

#[cfg(doc)]
use crate::error::Error;

/// `state_enum! { /// doc
///     pub enum Name in "table.column" { Variant = "word", ... } }`
macro_rules! state_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $column:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::error::Error::UnknownValue {
                        column: $column,
                        value: $crate::states::shown(s),
                    }),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::error::Error;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}
pub(crate) use state_enum;

/// An unknown word as an error message shows it: at most 40 characters.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    state_enum! {
        /// A test enum.
        pub enum Light in "test.light" {
            Red = "red",
            Green = "green",
        }
    }

    #[test]
    fn words_read_back_and_unknown_ones_are_errors() {
        for l in Light::ALL {
            assert_eq!(l.as_str().parse::<Light>().ok(), Some(*l));
            assert_eq!(Light::try_from(l.as_str()).ok(), Some(*l));
        }
        assert_eq!(format!("[{:<6}]", Light::Red), "[red   ]");
        assert!(Light::Green == "green" && Light::Green != "red");
        let e = "blue".parse::<Light>().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("the database holds an unknown value in test.light: \"blue\"")
        );
        let long = "x".repeat(100);
        let e = long.parse::<Light>().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.len() < 100));
    }
}
