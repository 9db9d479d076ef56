//! `rapidwasm status` and `rapidwasm dead-letters`: the durable router's
//! records, read from the data directory or from the running server.

use anyhow::bail;
use rapidwasm::config::Config;
use rapidwasm::http::{MessageStatus, RequeueRequest};
use rapidwasm::messages::Connection;
use rapidwasm::store::journal::{TransmissionKey, TransmissionRecord};

use super::{DeadLetters, remote, start_or_forward_quietly};

/// Print a message's status and its transmissions.
pub fn print_status(status: &MessageStatus) -> anyhow::Result<()> {
    let message = &status.message;
    println!("message {} ({:?}, {}): {:?}", message.id, message.direction, status.status, message.text);
    if let Some(original) = &message.in_response_to {
        println!("  in response to {original}");
    }
    for id in &message.responses {
        println!("  response {id}");
    }
    for t in &status.transmissions {
        println!("  {}", transmission_line(t));
    }
    Ok(())
}

fn transmission_line(t: &TransmissionRecord) -> String {
    let mut line =
        format!("{} {} via {}: {}", t.message_id, t.connection.identity, t.connection.backend, t.status.name());
    line.push_str(&format!(", {} tries", t.attempts));
    if t.dead_letter {
        line.push_str(", dead letter");
    }
    if let Some(error) = &t.error {
        line.push_str(&format!(", last error: {error}"));
    }
    line
}

/// `rapidwasm dead-letters list|requeue`.
pub async fn dead_letters(config: Config, action: DeadLetters) -> anyhow::Result<()> {
    let listen = config.listen;
    let host = start_or_forward_quietly(config).await?;
    let (limit, wanted) = match &action {
        DeadLetters::List { limit } => (*limit, None),
        DeadLetters::Requeue { all: true, .. } => (1000, None),
        DeadLetters::Requeue { message: Some(m), backend: Some(b), identity: Some(i), .. } => {
            (0, Some(TransmissionKey { message_id: m.clone(), connection: Connection::new(b, i) }))
        }
        DeadLetters::Requeue { .. } => {
            bail!("name the dead letter with --message, --backend and --identity, or use --all")
        }
    };
    let letters: Vec<TransmissionRecord> = match (&host, &wanted) {
        (_, Some(_)) => Vec::new(),
        (Some(host), None) => host.router().dead_letters(limit)?,
        (None, None) => remote::get(listen, &format!("/api/v1/dead-letters?limit={limit}")).await?,
    };
    if let DeadLetters::List { .. } = action {
        if letters.is_empty() {
            println!("no dead letters");
        }
        for t in &letters {
            println!("{}", transmission_line(t));
        }
        if let Some(host) = host {
            host.shutdown()?;
        }
        return Ok(());
    }
    let keys: Vec<TransmissionKey> = match wanted {
        Some(key) => vec![key],
        None => letters.iter().map(TransmissionRecord::key).collect(),
    };
    for key in &keys {
        match &host {
            Some(host) => host.router().requeue(key.clone()).await?,
            None => {
                let request = RequeueRequest {
                    message_id: key.message_id.clone(),
                    backend: key.connection.backend.clone(),
                    identity: key.connection.identity.clone(),
                };
                let _: TransmissionRecord = remote::post(listen, "/api/v1/dead-letters/requeue", &request).await?;
            }
        }
        println!("re-queued {} to {}", key.message_id, key.connection);
    }
    if let Some(host) = host {
        host.drain(super::ONE_SHOT_DRAIN).await;
        host.shutdown()?;
    }
    Ok(())
}
