//! The wall clock. Judging never reads it (the same events give the same decisions); it
//! dates what the operation of a store or server does: outages, deploys by a server,
//! delivery attempts.

/// Unix nanoseconds now, as event timestamps count them.
pub(crate) fn now_ns() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}
