//! IndexedDB's requests and transactions as futures, and the conversions between bytes and
//! JS values.

use super::*;

pub(super) fn failed(value: JsValue) -> IdbError {
    IdbError::Failed(js_message(&value))
}

pub(super) fn bytes(value: &[u8]) -> JsValue {
    Uint8Array::from(value).buffer().into()
}

pub(super) fn to_vec(value: &JsValue) -> Vec<u8> {
    Uint8Array::new(value).to_vec()
}

/// A one-shot channel whose sender two callbacks share: the first to fire answers, and
/// the other finds nothing left to send.
#[derive(Clone)]
pub(super) struct FirstAnswer<T>(Rc<RefCell<Option<oneshot::Sender<T>>>>);

impl<T> FirstAnswer<T> {
    fn new() -> (Self, oneshot::Receiver<T>) {
        let (sender, receiver) = oneshot::channel();
        (Self(Rc::new(RefCell::new(Some(sender)))), receiver)
    }

    fn send(&self, value: T) {
        if let Some(sender) = self.0.borrow_mut().take() {
            let _ = sender.send(value);
        }
    }
}

/// Waits until every request of `transaction` has finished (their results can be read
/// then); a failed request aborts it, and the error carries the reason. One pair of
/// callbacks for the whole transaction, where [`done`] costs a pair per request. They are
/// set when this is called, so the future may be kept and awaited later (a commit that
/// goes on while its transaction finishes); dropped unfinished, it unsets them.
pub(super) fn completed(
    transaction: &IdbTransaction,
) -> impl std::future::Future<Output = Result<(), IdbError>> + 'static {
    let (answer, finished) = FirstAnswer::new();
    let on_complete = Closure::once({
        let answer = answer.clone();
        move || answer.send(None)
    });
    let on_abort = Closure::once({
        let transaction = transaction.clone();
        move || {
            let reason = transaction
                .error()
                .map(|e| e.message())
                .unwrap_or_else(|| "aborted".into());
            answer.send(Some(reason));
        }
    });
    transaction.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
    transaction.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
    let handlers = Handlers {
        transaction: transaction.clone(),
        _on_complete: on_complete,
        _on_abort: on_abort,
    };
    async move {
        let outcome = finished.await;
        drop(handlers);
        match outcome {
            Ok(None) => Ok(()),
            Ok(Some(reason)) => Err(IdbError::Failed(format!("aborted: {reason}"))),
            Err(_) => Err(IdbError::Failed("never finished".into())),
        }
    }
}

/// A transaction's completion callbacks, unset when dropped: the closures go with them,
/// and a callback left set would call a closure that is gone.
struct Handlers {
    transaction: IdbTransaction,
    _on_complete: Closure<dyn FnMut()>,
    _on_abort: Closure<dyn FnMut()>,
}

impl Drop for Handlers {
    fn drop(&mut self) {
        self.transaction.set_oncomplete(None);
        self.transaction.set_onabort(None);
    }
}

/// The result of `request`. The handlers are set when this is called, not when the
/// future is first polled, so that requests issued together can be awaited one by one
/// without missing an event.
pub(super) fn done(
    request: IdbRequest,
) -> impl std::future::Future<Output = Result<JsValue, IdbError>> {
    let (answer, rx) = FirstAnswer::new();
    let on_success = Closure::once({
        let answer = answer.clone();
        move || answer.send(true)
    });
    let on_error = Closure::once(move || answer.send(false));
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    async move {
        let ok = rx.await.unwrap_or(false);
        request.set_onsuccess(None);
        request.set_onerror(None);
        drop((on_success, on_error));
        if ok {
            request.result().map_err(failed)
        } else {
            let error = request.error().ok().flatten().map(|e| e.message());
            Err(IdbError::Failed(
                error.unwrap_or_else(|| "request failed".into()),
            ))
        }
    }
}
