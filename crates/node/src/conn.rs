//! One request stream: decode every complete frame, answer each, write all answers in
//! one write, read more.
//!
//! Generic over the byte streams so it runs the same over a QUIC stream and over an
//! in-memory pipe in tests. Frames that are bad but delimited (wrong version,
//! undecodable body, over a limit) get an error response and the stream goes on; a
//! frame that breaks framing (length over the maximum or under the header) gets an
//! error response if its request id is known, then the stream ends.

use bytes::Buf;
use bytes::BytesMut;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use ringcache_proto::{
    ErrorCode, FrameError, RequestId, Response, WireError, decode_request, encode_response,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::handler::{Handler, Reply, ScanBatch, StreamMemo, encode_error};

/// Read buffer growth step.
const READ_CHUNK: usize = 64 << 10;

/// Most requests of one stream waiting for the store at once; more are refused with
/// `too_many_requests` until some finish.
pub const MAX_PENDING: usize = 4096;

type Waiting = FuturesUnordered<BoxFuture<'static, (RequestId, Response)>>;

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The peer finished its side.
    Finished,
    /// The node is shutting down: every request already received was answered, then
    /// the stream was finished.
    ShutDown,
    /// The peer broke framing; the stream was closed after an error response.
    ProtocolError(FrameError),
}

/// Serves one stream until the peer finishes it, breaks framing, or `shutdown` turns
/// true (graceful: every request already received is answered first).
///
/// # Errors
/// I/O errors of the underlying stream (the connection is gone).
pub async fn serve_stream<R, W>(
    handler: &Handler,
    mut recv: R,
    mut send: W,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<StreamEnd>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max_frame = handler.limits().max_frame;
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut outbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut waiting: Waiting = FuturesUnordered::new();
    let mut memo = StreamMemo::default();
    // Made once: a fresh wait per loop would register with (and leave) the shutdown
    // channel's waiter list, shared by every stream of the node, around every read.
    let stop = stop_requested(&mut shutdown);
    tokio::pin!(stop);
    loop {
        let mut fatal = None;
        loop {
            // GETs and SETs are read in place, a batch at a time (their entries
            // prefetched together); everything else (and every error) is left to
            // `decode_request`.
            let mut batch = ScanBatch::default();
            handler.scan_gets(&inbuf, &mut memo, max_frame, &mut batch);
            if !batch.is_empty() {
                for scanned in batch.iter() {
                    if let Some(reply) =
                        handler.handle_scanned(scanned, &mut memo, max_frame, &mut outbuf)
                    {
                        take(scanned.id, reply, &mut waiting, max_frame, &mut outbuf);
                    }
                }
                let used = batch.bytes();
                inbuf.advance(used);
                continue;
            }
            match decode_request(&mut inbuf, max_frame) {
                Ok(Some((id, req))) => {
                    take(
                        id,
                        handler.handle(req),
                        &mut waiting,
                        max_frame,
                        &mut outbuf,
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(id) = e.request_id() {
                        respond(
                            id,
                            &Response::Error(frame_error(&e)),
                            max_frame,
                            &mut outbuf,
                        );
                    }
                    if e.is_fatal() {
                        fatal = Some(e);
                        break;
                    }
                }
            }
        }
        collect_ready(&mut waiting, max_frame, &mut outbuf);
        if !outbuf.is_empty() {
            send.write_all(&outbuf).await?;
            outbuf.clear();
        }
        if let Some(e) = fatal {
            tracing::warn!(error = %e, "closing stream after a framing error");
            finish(&mut waiting, max_frame, &mut send).await?;
            return Ok(StreamEnd::ProtocolError(e));
        }
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
            inbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            read = recv.read_buf(&mut inbuf) => {
                if read? == 0 {
                    finish(&mut waiting, max_frame, &mut send).await?;
                    return Ok(StreamEnd::Finished);
                }
            }
            Some((id, r)) = waiting.next(), if !waiting.is_empty() => {
                respond(id, &r, max_frame, &mut outbuf);
            }
            () = &mut stop => {
                finish(&mut waiting, max_frame, &mut send).await?;
                return Ok(StreamEnd::ShutDown);
            }
        }
    }
}

/// Answers a ready reply now; queues a pending one (or refuses it when too many wait).
fn take(id: RequestId, reply: Reply, waiting: &mut Waiting, max_frame: u32, out: &mut BytesMut) {
    match reply {
        Reply::Ready(r) => respond(id, &r, max_frame, out),
        Reply::Pending(_) if waiting.len() >= MAX_PENDING => respond(
            id,
            &Response::Error(WireError::new(
                ErrorCode::TooManyRequests,
                format!(
                    "{MAX_PENDING} requests of this stream are waiting for the store; retry when some finish"
                ),
            )),
            max_frame,
            out,
        ),
        Reply::Pending(f) => waiting.push(Box::pin(async move { (id, f.await) })),
    }
}

/// Encodes every waiting response that is ready now.
fn collect_ready(waiting: &mut Waiting, max_frame: u32, out: &mut BytesMut) {
    while let Some(Some((id, r))) = waiting.next().now_or_never() {
        respond(id, &r, max_frame, out);
    }
}

/// Answers every waiting request, then finishes the stream.
async fn finish<W: AsyncWrite + Unpin>(
    waiting: &mut Waiting,
    max_frame: u32,
    send: &mut W,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    while let Some((id, r)) = waiting.next().await {
        respond(id, &r, max_frame, &mut out);
        collect_ready(waiting, max_frame, &mut out);
        send.write_all(&out).await?;
        out.clear();
    }
    send.shutdown().await
}

/// Resolves once `stop` turns true (or its sender is gone, which also means stop).
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before the caller awaits anything.
    let _ = stop.wait_for(|s| *s).await;
}

/// Encodes a response; one too large for a frame is replaced by an error saying so.
fn respond(id: RequestId, resp: &Response, max_frame: u32, out: &mut BytesMut) {
    if let Err(e) = encode_response(id, resp, max_frame, out)
        && let Err(e) = encode_response(id, &Response::Error(encode_error(&e)), max_frame, out)
    {
        tracing::error!(error = %e, "cannot encode an error response");
    }
}

fn frame_error(e: &FrameError) -> WireError {
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
        _ => ErrorCode::Malformed,
    };
    WireError::new(code, e.to_string())
}
