//! `ordo broadcast`: send transactions, report how they were answered.

use super::CommandError;
use crate::tools::client::broadcast::{broadcast, BroadcastOptions};

/// Sends as `options` says and prints the tally; fails if any envelope was
/// not accepted.
pub async fn run(options: &BroadcastOptions) -> Result<(), CommandError> {
    let report = broadcast(options).await?;
    println!(
        "sent {} envelopes of {} data bytes over {} stream(s) in {:.2}s: {} SUCCESS, {:.0} envelopes/s",
        report.sent,
        options.size,
        options.streams,
        report.elapsed.as_secs_f64(),
        report.succeeded,
        report.envelopes_per_second()
    );
    for (status, (count, info)) in &report.errors {
        println!("  {count} answered {status}: {info}");
    }
    if report.succeeded != report.sent {
        return Err(CommandError::NotAccepted {
            refused: report.sent - report.succeeded,
            sent: report.sent,
        });
    }
    Ok(())
}
