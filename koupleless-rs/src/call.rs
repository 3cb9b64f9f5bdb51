//! Asking an actor and waiting for its answer, with the two ways that can fail kept apart: the
//! actor did not answer in time ([`BaseError::Unresponsive`]), or it is gone
//! ([`BaseError::ShuttingDown`]).
//!
//! Works on an actor's own reference and on a derived one (`DerivedActorRef`), through which
//! a part of the base sends the messages it declares without knowing the actor's protocol.

use std::time::Duration;

use ractor::{ActorRef, DerivedActorRef, Message, RpcReplyPort, concurrency::oneshot};

use crate::error::BaseError;

/// How long a question to an actor that answers from its own state may take: longer means the
/// actor is stuck, not busy.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The reply port of an operation that can fail.
pub(crate) type Reply<T> = RpcReplyPort<Result<T, BaseError>>;

/// Something messages of type `M` can be sent to.
pub(crate) trait Mailbox<M> {
    /// Sends `message`; `false` when the actor is gone.
    fn post(&self, message: M) -> bool;
}

impl<M: Message> Mailbox<M> for ActorRef<M> {
    fn post(&self, message: M) -> bool {
        self.send_message(message).is_ok()
    }
}

impl<M> Mailbox<M> for DerivedActorRef<M> {
    fn post(&self, message: M) -> bool {
        self.send_message(message).is_ok()
    }
}

/// Sends the message `ask` builds and waits for the answer: at most `timeout`, or until the
/// actor answers when `None` (an operation bounded by its own configured timeouts). `actor`
/// names it in the error.
pub(crate) async fn call<M, T: Send + 'static>(
    to: &impl Mailbox<M>,
    actor: &'static str,
    timeout: Option<Duration>,
    ask: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, BaseError> {
    let (tx, rx) = oneshot();
    if !to.post(ask(tx.into())) {
        return Err(BaseError::ShuttingDown);
    }
    let answer = match timeout {
        None => rx.await,
        Some(limit) => match tokio::time::timeout(limit, rx).await {
            Ok(answer) => answer,
            Err(_) => {
                return Err(BaseError::Unresponsive {
                    actor,
                    waited: humantime_serde::re::humantime::format_duration(limit).to_string(),
                });
            }
        },
    };
    // The reply port was dropped: the actor stopped before it answered.
    answer.map_err(|_| BaseError::ShuttingDown)
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr};

    use super::*;

    struct Slow;

    impl Actor for Slow {
        type Msg = RpcReplyPort<()>;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<Self::Msg>,
            reply: Self::Msg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = reply.send(());
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_slow_actor_is_unresponsive_and_a_stopped_one_is_gone() {
        let (actor, handle) = Actor::spawn(None, Slow, ()).await.unwrap();
        let slow = call(
            &actor,
            "the slow actor",
            Some(Duration::from_millis(20)),
            |r| r,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                slow,
                BaseError::Unresponsive {
                    actor: "the slow actor",
                    ..
                }
            ),
            "{slow}"
        );
        assert!(
            slow.to_string().contains("did not answer within 20ms"),
            "{slow}"
        );
        call(&actor, "the slow actor", None, |r| r).await.unwrap();
        actor.stop(None);
        handle.await.unwrap();
        let gone = call(&actor, "the slow actor", None, |r| r)
            .await
            .unwrap_err();
        assert!(matches!(gone, BaseError::ShuttingDown), "{gone}");
    }
}
