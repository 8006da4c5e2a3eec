//! Registry actor: the control plane's directory. Maps stream names to Stream actors, creates
//! them on first use and removes them when they go idle. Never touches a frame.
//!
//! Invariant: at most one Stream instance per name is registered; a stream stops only after
//! the registry removed it, so a lookup never returns a stream that will not answer.

use crate::messages::*;
use crate::stream::Stream;
use actix::prelude::*;
use mediarouter_core::media::StreamName;
use mediarouter_core::settings::StreamSettings;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Registry {
    settings: Arc<StreamSettings>,
    streams: BTreeMap<StreamName, (u64, Addr<Stream>)>,
    next_instance: u64,
}

impl Registry {
    pub fn new(settings: Arc<StreamSettings>) -> Self {
        Registry {
            settings,
            streams: BTreeMap::new(),
            next_instance: 1,
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<FindOrCreateStream> for Registry {
    type Result = MessageResult<FindOrCreateStream>;

    fn handle(&mut self, msg: FindOrCreateStream, ctx: &mut Context<Self>) -> Self::Result {
        if let Some((_, addr)) = self.streams.get(&msg.name) {
            if addr.connected() {
                return MessageResult(addr.clone());
            }
        }
        let instance = self.next_instance;
        self.next_instance += 1;
        let stream = Stream::new(
            msg.name.clone(),
            instance,
            ctx.address(),
            Arc::clone(&self.settings),
        )
        .start();
        self.streams.insert(msg.name, (instance, stream.clone()));
        MessageResult(stream)
    }
}

impl Handler<FindStream> for Registry {
    type Result = Option<Addr<Stream>>;

    fn handle(&mut self, msg: FindStream, _: &mut Context<Self>) -> Self::Result {
        self.streams.get(&msg.name).map(|(_, addr)| addr.clone())
    }
}

impl Handler<ListStreams> for Registry {
    type Result = MessageResult<ListStreams>;

    fn handle(&mut self, _: ListStreams, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.streams.values().map(|(_, a)| a.clone()).collect())
    }
}

impl Handler<StreamIdle> for Registry {
    type Result = bool;

    fn handle(&mut self, msg: StreamIdle, _: &mut Context<Self>) -> bool {
        match self.streams.get(&msg.name) {
            Some((instance, _)) if *instance == msg.instance => {
                self.streams.remove(&msg.name);
                true
            }
            // Not (or no longer) the registered instance: it has no business running.
            _ => true,
        }
    }
}

/// Finds or creates the stream and runs `op` on it, asking again while it is retiring.
pub async fn with_stream<T, F, Fut>(
    registry: &Addr<Registry>,
    name: &StreamName,
    mut op: F,
) -> Result<T, StreamError>
where
    F: FnMut(Addr<Stream>) -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, StreamError>, MailboxError>>,
{
    for _ in 0..20 {
        let Ok(stream) = registry
            .send(FindOrCreateStream { name: name.clone() })
            .await
        else {
            return Err(StreamError::Retired);
        };
        match op(stream).await {
            Ok(Err(StreamError::Retired)) | Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Ok(result) => return result,
        }
    }
    Err(StreamError::Retired)
}
