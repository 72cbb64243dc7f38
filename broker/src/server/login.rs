//! The connection edge's side of SASL: SaslHandshake and SaslAuthenticate requests, raw tokens
//! after a SaslHandshake v0, and which requests a connection may send as it stands (see
//! [`crate::security::sasl`] for the state machine). A failed login is counted, logged within
//! the log limit (user and client address; never a password or token) and answered with
//! SASL_AUTHENTICATION_FAILED before the connection closes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};

use super::pipeline::{Answer, Reply, Start};
use super::{BrokerRequests, respond};
use crate::handler::str_bytes;
use crate::protocol::Request;
use crate::security::Session;
use crate::security::sasl::{
    Admission, Authenticator, HandshakeError, Step, check_token, verify_plain,
};

pub(super) fn lock(auth: &Mutex<Authenticator>) -> std::sync::MutexGuard<'_, Authenticator> {
    auth.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BrokerRequests {
    /// The session `request` is served in, or `None` when the connection may not send it now
    /// (before a login, after its session ended): the connection closes.
    pub(super) fn admit(&self, api: ApiKey) -> Option<Session> {
        let Some(auth) = &self.sasl else {
            return Some(self.session.clone());
        };
        match lock(auth).admit(api, Instant::now()) {
            Admission::Serve(principal) => Some(Session {
                principal,
                ..self.session.clone()
            }),
            Admission::Close(reason) => {
                if let Some(held_back) = self.refusals.admit() {
                    tracing::warn!(peer = %self.session.peer, ?api, reason, held_back, "closing a connection: not authenticated for this request");
                }
                None
            }
        }
    }

    /// Whether the next frame is a raw SASL token (after a SaslHandshake v0).
    pub(super) fn expects_raw_token(&self) -> bool {
        self.sasl
            .as_ref()
            .is_some_and(|auth| lock(auth).expects_raw_token())
    }

    /// A raw SASL token (v0 framing): answered with the server's token as a raw frame; a failed
    /// login closes the connection, as Kafka does.
    #[allow(clippy::async_yields_async)]
    pub(super) fn raw_token(&self, token: Bytes) -> Start {
        let login = self.login_step(token);
        Box::pin(async move {
            let answer = match login.await {
                Step::Continue(token) | Step::Done { token, .. } => {
                    let mut frame = BytesMut::with_capacity(4 + token.len());
                    frame.put_u32(u32::try_from(token.len()).unwrap_or(u32::MAX));
                    frame.put_slice(&token);
                    Answer::Frame(frame.freeze())
                }
                Step::Failed { .. } => Answer::Close,
            };
            Box::pin(async move { answer }) as Reply
        })
    }

    /// SaslHandshake or SaslAuthenticate.
    #[allow(clippy::async_yields_async)]
    pub(super) fn sasl_request(
        &self,
        request: Request,
        started: Instant,
        request_bytes: usize,
    ) -> Start {
        let header = (request.api, request.version, request.header.correlation_id);
        let broker = Arc::clone(&self.broker);
        let peer = self.session.peer;
        let answer = move |body: ResponseKind, last: bool| {
            let answer = respond(&broker, peer, header, Some(body), started, request_bytes);
            match answer {
                Answer::Frame(frame) if last => Answer::Last(frame),
                answer => answer,
            }
        };
        let ready = |answer: Answer| -> Start {
            Box::pin(async move { Box::pin(async move { answer }) as Reply })
        };
        match request.body {
            RequestKind::SaslHandshake(handshake) => {
                // A listener without SASL answers as Kafka's do: ILLEGAL_SASL_STATE.
                let Some(auth) = &self.sasl else {
                    let body = SaslHandshakeResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code());
                    return ready(answer(ResponseKind::SaslHandshake(body), false));
                };
                let mut auth = lock(auth);
                let mechanisms = auth.mechanisms().into_iter().map(str_bytes).collect();
                let outcome = auth.handshake(&handshake.mechanism, request.version == 0);
                let code = match &outcome {
                    Ok(()) => 0,
                    Err(HandshakeError::Unsupported(_)) => {
                        ResponseError::UnsupportedSaslMechanism.code()
                    }
                    Err(HandshakeError::IllegalState) => ResponseError::IllegalSaslState.code(),
                };
                if let Err(error) = &outcome {
                    self.broker
                        .metrics()
                        .authentication_failed(handshake.mechanism.as_str());
                    if let Some(held_back) = self.refusals.admit() {
                        tracing::warn!(%peer, %error, held_back, "refused a SASL handshake");
                    }
                }
                let body = SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(mechanisms);
                ready(answer(ResponseKind::SaslHandshake(body), outcome.is_err()))
            }
            RequestKind::SaslAuthenticate(authenticate) => {
                if self.sasl.is_none() {
                    let body = SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(str_bytes(
                            "SASL is not enabled on this listener",
                        )));
                    return ready(answer(ResponseKind::SaslAuthenticate(body), false));
                }
                let login = self.login_step(authenticate.auth_bytes);
                Box::pin(async move {
                    let (body, last) = match login.await {
                        Step::Continue(token) => (
                            SaslAuthenticateResponse::default().with_auth_bytes(token.into()),
                            false,
                        ),
                        Step::Done {
                            token,
                            session_lifetime,
                            ..
                        } => (
                            SaslAuthenticateResponse::default()
                                .with_auth_bytes(token.into())
                                .with_session_lifetime_ms(session_lifetime.map_or(0, |l| {
                                    i64::try_from(l.as_millis()).unwrap_or(i64::MAX)
                                })),
                            false,
                        ),
                        Step::Failed { message, .. } => (
                            SaslAuthenticateResponse::default()
                                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                                .with_error_message(Some(str_bytes(message))),
                            true,
                        ),
                    };
                    let answer = answer(ResponseKind::SaslAuthenticate(body), last);
                    Box::pin(async move { answer }) as Reply
                })
            }
            // Only the two SASL requests come here.
            _ => ready(Answer::Close),
        }
    }

    /// One client token of the login in progress: PLAIN's password checked off the request
    /// path, SCRAM's messages in place. A failure is counted and logged here.
    fn login_step(&self, token: Bytes) -> std::pin::Pin<Box<dyn Future<Output = Step> + Send>> {
        let Some(auth) = self.sasl.clone() else {
            return Box::pin(std::future::ready(Step::Failed {
                message: "Authentication failed".to_owned(),
                reason: "no SASL on this listener".to_owned(),
                user: None,
            }));
        };
        let broker = Arc::clone(&self.broker);
        let refusals = Arc::clone(&self.refusals);
        let peer = self.session.peer;
        Box::pin(async move {
            let (mechanism, plain, bearer, oauth) = {
                let auth = lock(&auth);
                (
                    auth.mechanism(),
                    auth.plain_login(&token),
                    auth.bearer_login(&token),
                    auth.oauth(),
                )
            };
            let step = match plain {
                None if bearer.is_some() => {
                    let checked = match (bearer, oauth) {
                        (Some(Ok(token)), Some(oauth)) => {
                            tokio::task::spawn_blocking(move || check_token(&oauth, &token))
                                .await
                                .unwrap_or_else(|error| Err(error.to_string()))
                        }
                        (Some(Err(error)), _) => Err(error.to_string()),
                        _ => Err("OAUTHBEARER is not set up on this broker".to_owned()),
                    };
                    lock(&auth).bearer_checked(checked, Instant::now())
                }
                Some(Ok((user, password))) => {
                    let image = broker.image();
                    let name = user.clone();
                    let verified =
                        tokio::task::spawn_blocking(move || verify_plain(&image, &name, &password))
                            .await
                            .unwrap_or(false);
                    lock(&auth).plain_checked(&user, verified, Instant::now())
                }
                Some(Err(error)) => lock(&auth).plain_malformed(&error),
                None => lock(&auth).authenticate(&token, &broker.image(), Instant::now()),
            };
            let mechanism = mechanism.map_or("none", |m| m.name());
            match &step {
                Step::Failed { reason, user, .. } => {
                    broker.metrics().authentication_failed(mechanism);
                    if let Some(held_back) = refusals.admit() {
                        tracing::warn!(%peer, mechanism, user = user.as_deref().unwrap_or("-"), reason, held_back, "failed SASL login");
                    }
                }
                Step::Done { principal, .. } => {
                    tracing::debug!(%peer, mechanism, %principal, "SASL login");
                }
                Step::Continue(_) => {}
            }
            step
        })
    }
}
