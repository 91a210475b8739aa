//! The listeners registered with `on`, by event name, and how they are called.

use std::cell::RefCell;

use js_sys::Function;
use wasm_bindgen::JsValue;

/// Listeners by event name, in registration order. Any name is accepted (as the JavaScript
/// library's event emitter did); only the documented ones are ever emitted.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    by_event: RefCell<Vec<(String, Vec<Function>)>>,
}

impl Listeners {
    /// Adds `callback` to `event`'s listeners.
    pub(crate) fn on(&self, event: &str, callback: Function) {
        let mut by_event = self.by_event.borrow_mut();
        match by_event.iter_mut().find(|(name, _)| name == event) {
            Some((_, callbacks)) => callbacks.push(callback),
            None => by_event.push((event.to_owned(), vec![callback])),
        }
    }

    /// Removes `callback` (the same function object) from `event`'s listeners, once.
    pub(crate) fn off(&self, event: &str, callback: &Function) {
        let mut by_event = self.by_event.borrow_mut();
        if let Some((_, callbacks)) = by_event.iter_mut().find(|(name, _)| name == event)
            && let Some(at) = callbacks.iter().position(|c| c == callback)
        {
            callbacks.remove(at);
        }
    }

    /// Calls `event`'s listeners with `argument`. A listener may register or remove listeners
    /// (the list is copied first); one that throws is logged and the others are still called.
    pub(crate) fn emit(&self, event: &str, argument: &JsValue) {
        let callbacks = self
            .by_event
            .borrow()
            .iter()
            .find(|(name, _)| name == event)
            .map(|(_, callbacks)| callbacks.clone())
            .unwrap_or_default();
        for callback in callbacks {
            if let Err(thrown) = callback.call1(&JsValue::UNDEFINED, argument) {
                web_sys::console::error_3(
                    &JsValue::from_str("p2pmesh: a listener of"),
                    &JsValue::from_str(event),
                    &thrown,
                );
            }
        }
    }
}
