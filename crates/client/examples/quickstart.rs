//! Run with: `target/release/ringctl local up --detach` (once), then
//! `cargo run -p ringcache-client --example quickstart [path/to/client.toml]`
//!
//! Connects with the client.toml that `ringctl local up` writes, stores and reads a
//! value, stores a typed value as JSON, and uses `get_or_load` so that 100 concurrent
//! callers for one key run the (slow) loader once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ringcache_client::{Client, ClientConfig, LoadOptions, SetOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct User {
    id: u64,
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| ".ringcache/local/client.toml".to_owned());
    let client = Client::connect(ClientConfig::from_file(path.as_ref())?).await?;
    println!("connected to {}", client.ping().await?);

    let version = client
        .set(
            "default",
            "greeting",
            "hello",
            SetOptions::ttl(Duration::from_secs(60)),
        )
        .await?;
    let entry = client
        .get("default", "greeting")
        .await?
        .ok_or("greeting vanished")?;
    println!(
        "greeting = {:?} (version {version}, expires in {:?} ms)",
        entry.value, entry.ttl_ms
    );

    let alice = User {
        id: 42,
        name: "alice".into(),
    };
    client
        .set_json("default", "user:42", &alice, SetOptions::default())
        .await?;
    let back: Option<User> = client.get_json("default", "user:42").await?;
    println!("user:42 = {back:?}");

    // Stampede protection: 100 concurrent misses, one load.
    client.delete("default", "report", None).await?;
    let loads = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (client, loads) = (client.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                client
                    .get_or_load(
                        "default",
                        "report",
                        LoadOptions::ttl(Duration::from_secs(30)),
                        || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await; // a slow query
                            Ok::<_, std::io::Error>(Bytes::from_static(b"expensive result"))
                        },
                    )
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    println!("100 callers, {} load(s)", loads.load(Ordering::SeqCst));
    client.close().await;
    Ok(())
}
