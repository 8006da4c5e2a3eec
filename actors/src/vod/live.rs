//! A media file played as a live stream (`vod-live/NAME`): one publisher for all players of
//! every kind, the file looping forever, started by the first player and stopped some time
//! after the last one left.
//!
//! Invariants: timestamps keep increasing across loops (each loop starts where the previous
//! one ended), so players see one continuous stream; frames are paced in real time from the
//! first one (no burst: this is live); the publisher holds its stream name in the registry
//! like any other, and a read error ends it like a camera that fails.

use crate::messages::*;
use crate::registry::{publish_stream, Registry};
use crate::stream::{MediaHub, Stream};
use actix::prelude::*;
use mediarouter_core::media::{Frame, QueryParams, StreamName};
use mediarouter_core::vod::{on_metadata, VodFile};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// A loop nobody watches stops after this long.
const IDLE_STOP: Duration = Duration::from_secs(10);
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub struct FileLoop {
    peer: PeerId,
    name: StreamName,
    /// Taken by the reading task once publishing is granted.
    file: Option<VodFile>,
    registry: Addr<Registry>,
    stream: Option<Addr<Stream>>,
    task: Option<JoinHandle<()>>,
    idle_since: Option<Instant>,
}

/// The reading task → its loop: the file cannot be played on.
#[derive(Message)]
#[rtype(result = "()")]
struct LoopEnded(String);

impl FileLoop {
    pub fn new(name: StreamName, file: VodFile, registry: Addr<Registry>) -> FileLoop {
        FileLoop {
            peer: PeerId::next(),
            name,
            file: Some(file),
            registry,
            stream: None,
            task: None,
            idle_since: None,
        }
    }

    /// Stops when nobody has watched for `IDLE_STOP`.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let Some(stream) = self.stream.clone() else {
            return;
        };
        stream
            .send(GetStreamInfo)
            .into_actor(self)
            .map(|info, this, ctx| {
                let watched = info.map(|i| i.players.total > 0).unwrap_or(false);
                if watched {
                    this.idle_since = None;
                } else if this.idle_since.get_or_insert_with(Instant::now).elapsed() > IDLE_STOP {
                    info!(stream = %this.name, "file loop stopped: nobody watches");
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }
}

impl Actor for FileLoop {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let request = Publish {
            peer: self.peer,
            protocol: Protocol::File,
            address: "file".into(),
            query: QueryParams::default(),
            control: ctx.address().recipient(),
            client: None,
            private: false,
            holder: None,
        };
        let (registry, name) = (self.registry.clone(), self.name.clone());
        publish_stream(registry, name, request)
            .into_actor(self)
            .map(|granted, this, ctx| match granted {
                Ok((grant, stream)) => {
                    let Some(file) = this.file.take() else {
                        return ctx.stop();
                    };
                    info!(stream = %this.name, "file loop publishing");
                    this.stream = Some(stream);
                    let ended = ctx.address().recipient();
                    this.task = Some(tokio::spawn(play_looping(
                        file,
                        grant.hub,
                        grant.token,
                        this.name.clone(),
                        ended,
                    )));
                    ctx.run_interval(CHECK_INTERVAL, |this, ctx| this.check_idle(ctx));
                }
                Err(e) => {
                    warn!(stream = %this.name, "file loop cannot publish: {e}");
                    ctx.stop();
                }
            })
            .wait(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(stream) = self.stream.take() {
            stream.do_send(Unpublish { peer: self.peer });
        }
    }
}

impl Handler<LoopEnded> for FileLoop {
    type Result = ();

    fn handle(&mut self, msg: LoopEnded, ctx: &mut Context<Self>) {
        warn!(stream = %self.name, reason = %msg.0, "file loop ended");
        ctx.stop();
    }
}

impl Handler<PublisherCommand> for FileLoop {
    type Result = ();

    fn handle(&mut self, msg: PublisherCommand, ctx: &mut Context<Self>) {
        match msg {
            PublisherCommand::Stop { reason } => {
                // The stream already let go of this publisher.
                self.stream = None;
                info!(stream = %self.name, %reason, "file loop stopped by the server");
                ctx.stop();
            }
            // Every loop starts on a keyframe and the file's GOPs are what they are.
            PublisherCommand::RequestKeyframe | PublisherCommand::Message { .. } => {}
        }
    }
}

/// Reads the file over and over into the stream, in real time.
async fn play_looping(
    mut file: VodFile,
    hub: Arc<MediaHub>,
    token: u64,
    name: StreamName,
    ended: Recipient<LoopEnded>,
) {
    hub.push_metadata(token, on_metadata(file.info()));
    for config in file.configs() {
        hub.push_config(token, config);
    }
    let started = Instant::now();
    // Added to the file's timestamps: where the current loop starts on the stream's timeline.
    let mut offset_us: i64 = 0;
    let mut end_us: i64 = 0;
    loop {
        let frame = match file.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                // The next loop starts one frame interval after this one's last frame.
                let duration_us = file.info().duration_ms as i64 * 1000;
                offset_us = (offset_us + duration_us).max(end_us + 1);
                if let Err(e) = file.seek(0) {
                    return ended.do_send(LoopEnded(format!("cannot loop: {e}")));
                }
                debug!(stream = %name, offset_ms = offset_us / 1000, "file loop restarted");
                continue;
            }
            Err(e) => return ended.do_send(LoopEnded(format!("file read failed: {e}"))),
        };
        let dts_us = offset_us + frame.dts_us;
        end_us = end_us.max(dts_us);
        let due = started + Duration::from_micros(dts_us.max(0) as u64);
        tokio::time::sleep_until(due).await;
        let frame = Frame::new(
            frame.codec,
            dts_us,
            frame.cts_us,
            frame.keyframe,
            frame.payload,
        );
        hub.push_frame(token, frame);
    }
}
