//! This machine's name, as the kernel has it: the default node name, the
//! holders of leases, the generated certificate's names.

/// The host name; `None` when it cannot be read or is empty.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}
