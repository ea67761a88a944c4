//! Sends many envelopes over several Broadcast streams and counts the answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{connect, envelope, ClientError};
use crate::fabric::protos::common::Status;

/// What to send.
#[derive(Debug, Clone)]
pub struct BroadcastOptions {
    pub address: String,
    pub channel: String,
    pub count: u64,
    /// Bytes of transaction data per envelope.
    pub size: usize,
    pub streams: u32,
}

/// What came back.
#[derive(Debug, Default, Clone)]
pub struct BroadcastReport {
    pub sent: u64,
    pub succeeded: u64,
    /// Non-SUCCESS answers by status name, with the first info string seen.
    pub errors: BTreeMap<String, (u64, String)>,
    /// Streams that ended with a gRPC error or without answering everything.
    pub broken_streams: u32,
    pub elapsed: Duration,
}

impl BroadcastReport {
    pub fn envelopes_per_second(&self) -> f64 {
        self.succeeded as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs the broadcast. Each stream sends its share and reads its answers.
pub async fn broadcast(options: &BroadcastOptions) -> Result<BroadcastReport, ClientError> {
    let streams = options.streams.max(1) as u64;
    let data = Bytes::from(vec![0x5a; options.size]);
    let mut clients = Vec::with_capacity(streams as usize);
    for _ in 0..streams {
        clients.push(connect(&options.address).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let share = options.count / streams + u64::from((i as u64) < options.count % streams);
            let channel = options.channel.clone();
            let data = data.clone();
            tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(256);
                let producer = tokio::spawn(async move {
                    for _ in 0..share {
                        if tx
                            .send(envelope::transaction(&channel, data.clone()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                });
                let mut report = BroadcastReport {
                    sent: share,
                    ..Default::default()
                };
                let mut answered = 0u64;
                match client.broadcast(ReceiverStream::new(rx)).await {
                    Ok(response) => {
                        let mut responses = response.into_inner();
                        while let Some(item) = responses.next().await {
                            match item {
                                Ok(r) if r.status == Status::Success as i32 => {
                                    report.succeeded += 1
                                }
                                Ok(r) => {
                                    let name = Status::try_from(r.status).map_or_else(
                                        |_| r.status.to_string(),
                                        |s| s.as_str_name().to_string(),
                                    );
                                    let entry = report.errors.entry(name).or_insert((0, r.info));
                                    entry.0 += 1;
                                }
                                Err(_) => break,
                            }
                            answered += 1;
                            if answered == share {
                                break;
                            }
                        }
                    }
                    Err(status) => {
                        report
                            .errors
                            .entry(status.code().to_string())
                            .or_insert((0, status.message().into()))
                            .0 += 1;
                    }
                }
                if answered < share {
                    report.broken_streams += 1;
                }
                producer.abort();
                report
            })
        })
        .collect();
    let mut total = BroadcastReport::default();
    for task in tasks {
        let report = task.await.unwrap_or_else(|_| BroadcastReport {
            broken_streams: 1,
            ..Default::default()
        });
        total.sent += report.sent;
        total.succeeded += report.succeeded;
        total.broken_streams += report.broken_streams;
        for (name, (count, info)) in report.errors {
            total.errors.entry(name).or_insert((0, info)).0 += count;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
