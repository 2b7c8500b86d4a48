//! Messages, attempts and the idempotency records of API requests: the
//! reads the API and UI expose, and content expunging. Message creation is
//! [`crate::accept`].

use crate::{Engine, EngineError};
use switchyard_core::{AppId, AttemptId, EndpointId, MessageId};
use switchyard_store::{
    Attempt, AttemptFilter, DeliveryView, Message, MessageFilter, NodeInfo, Page, PageRequest,
    StoredResponse,
};

impl Engine {
    /// A page of an application's messages, newest first unless asked.
    pub async fn list_messages(
        &self,
        app: &AppId,
        filter: &MessageFilter,
    ) -> Result<Page<Message>, EngineError> {
        Ok(self.store.list_messages(app, filter).await?)
    }

    /// A message by id or by its `eventId`.
    ///
    /// Errors: [`EngineError::NotFound`] when there is none.
    pub async fn message(&self, app: &AppId, id_or_event_id: &str) -> Result<Message, EngineError> {
        self.store
            .get_message(app, id_or_event_id)
            .await?
            .ok_or(EngineError::NotFound("message"))
    }

    /// Deletes a message's payload for good (the message and its attempts
    /// stay). Returns whether there was a payload.
    pub async fn expunge_message_content(
        &self,
        app: &AppId,
        id: &MessageId,
    ) -> Result<bool, EngineError> {
        Ok(self.store.expunge_message_content(app, id).await?)
    }

    /// A page of attempts matching `filter`.
    pub async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Page<Attempt>, EngineError> {
        Ok(self.store.list_attempts(filter).await?)
    }

    /// One attempt of a message.
    ///
    /// Errors: [`EngineError::NotFound`] when there is none.
    pub async fn attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Attempt, EngineError> {
        self.store
            .get_attempt(app, msg, id)
            .await?
            .ok_or(EngineError::NotFound("attempt"))
    }

    /// A message's deliveries, one per endpoint, with their endpoints.
    pub async fn deliveries_of_message(
        &self,
        app: &AppId,
        msg: &MessageId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>, EngineError> {
        Ok(self.store.deliveries_of_message(app, msg, page).await?)
    }

    /// An endpoint's deliveries, with their messages; `status` filters by
    /// a [`switchyard_store::DeliveryStatus`] code.
    pub async fn deliveries_of_endpoint(
        &self,
        ep: &EndpointId,
        filter: &MessageFilter,
        status: Option<u8>,
    ) -> Result<Page<DeliveryView>, EngineError> {
        Ok(self
            .store
            .deliveries_of_endpoint(ep, filter, status)
            .await?)
    }

    /// The response recorded for an API request's `Idempotency-Key` (scoped
    /// by the caller), if one is within the idempotency window.
    pub async fn idempotent_response(
        &self,
        scoped_key: &str,
    ) -> Result<Option<StoredResponse>, EngineError> {
        Ok(self.store.idempotent_response(scoped_key).await?)
    }

    /// Records the response to replay for a repeated `Idempotency-Key`.
    pub async fn save_idempotent_response(
        &self,
        scoped_key: &str,
        response: StoredResponse,
    ) -> Result<(), EngineError> {
        Ok(self
            .store
            .save_idempotent_response(scoped_key, response)
            .await?)
    }

    /// The nodes sharing the database, with their partition leases.
    pub async fn cluster_nodes(&self, now_ms: u64) -> Result<Vec<NodeInfo>, EngineError> {
        Ok(self.store.cluster(now_ms).await?)
    }

    /// Whether the database answers: the readiness check.
    pub async fn ping(&self) -> Result<(), EngineError> {
        Ok(self.store.ping().await?)
    }
}
