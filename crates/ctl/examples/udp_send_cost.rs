//! What one UDP datagram costs the sender on loopback, sent one per system call
//! (`sendto`) and many per call (`sendmmsg`): the measurement behind "batching the
//! datagrams of many connections into one send" in `docs/benchmarks/node.md`. If the
//! per-call part were large, a QUIC endpoint gathering the packets of its connections
//! into one `sendmmsg` would make the node's depth-1 path cheaper; if nearly all of the
//! cost is per datagram (the kernel's IP, netfilter and loopback delivery path), it
//! would not.
//!
//! Run with (Linux only):
//! ```sh
//! cargo run --release -p ringcache-ctl --example udp_send_cost -- [PASSES] [DATAGRAMS] [SIZE]
//! ```
//! Defaults: 3 passes, 1,000,000 datagrams, 120 bytes (a GET answer's QUIC packet at
//! depth 1). Each pass times batches of 1 (one `sendto` each), 16 and 64 back to back.
//! The receiving socket is drained by a thread, so the sender also pays the receiver's
//! wake-ups, as the node does; set `UDP_SEND_COST_NO_READER=1` to leave it undrained
//! (the kernel then drops at the full receive buffer, after the whole delivery path).

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    use std::net::UdpSocket;
    use std::time::Instant;

    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (passes, datagrams, size) = (arg(1, 3), arg(2, 1_000_000), arg(3, 120));
    let receiver = UdpSocket::bind("127.0.0.1:0")?;
    let target = receiver.local_addr()?;
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    sender.connect(target)?;
    if std::env::var_os("UDP_SEND_COST_NO_READER").is_none() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while receiver.recv(&mut buf).is_ok() {}
        });
    }
    let payload = vec![0x5A_u8; size];
    println!("{datagrams} datagrams of {size} bytes per run, ns per datagram:");
    println!(
        "{:>5} {:>12} {:>12} {:>12}",
        "pass", "1 per call", "16 per call", "64 per call"
    );
    for pass in 1..=passes {
        let mut row = Vec::new();
        for batch in [1, 16, 64] {
            let start = Instant::now();
            let mut sent = 0;
            while sent < datagrams {
                sent += if batch == 1 {
                    usize::from(sender.send(&payload).is_ok())
                } else {
                    mmsg::send(&sender, &payload, batch)?
                };
            }
            row.push(start.elapsed().as_nanos() as f64 / datagrams as f64);
        }
        println!(
            "{pass:>5} {:>12.0} {:>12.0} {:>12.0}",
            row[0], row[1], row[2]
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("udp_send_cost measures Linux' sendmmsg; run it on Linux");
}

#[cfg(target_os = "linux")]
mod mmsg {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// Sends `batch` copies of `payload` on the connected `socket` with one `sendmmsg`;
    /// returns how many the kernel took.
    pub(crate) fn send(socket: &UdpSocket, payload: &[u8], batch: usize) -> std::io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        };
        let mut headers: Vec<libc::mmsghdr> = (0..batch)
            .map(|_| {
                // SAFETY: all-zero is a valid `msghdr` (null name and control, no iovecs).
                #[allow(unsafe_code)]
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: msg,
                    msg_len: 0,
                }
            })
            .collect();
        let len = u32::try_from(batch).unwrap_or(u32::MAX);
        // SAFETY: `headers` holds `batch` initialized headers, each pointing at `iov`,
        // which points at `payload`; all outlive the call, and the kernel only reads
        // them (and writes `msg_len`).
        #[allow(unsafe_code)]
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), len, 0) };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            // A full send buffer is not an error for this measurement: try again.
            return match err.kind() {
                std::io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(err),
            };
        }
        Ok(usize::try_from(sent).unwrap_or(0))
    }
}
