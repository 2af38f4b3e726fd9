//! Running policy tests (`lever test`): each test's statements become events replayed in
//! memory through the compiled set (`run`), and the outcomes are reported, with coverage of
//! thresholds and override rules (`report`).

pub(crate) mod report;
pub(crate) mod run;
