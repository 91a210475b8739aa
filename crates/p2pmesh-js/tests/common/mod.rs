//! Helpers of the browser tests: the options object, awaiting the API's promises, listeners that
//! record what they are called with, patient waits (never timing assertions).
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use js_sys::{Function, Object, Promise, Reflect};
use p2pmesh_js::{Mesh, WebSocketTransport};
use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// How long any one expected event may take (a bound that stops a hung test, not a measurement).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// `{ transport, ...fields }` as JavaScript would write it.
pub fn options(transport: WebSocketTransport, fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    Reflect::set(&object, &"transport".into(), &JsValue::from(transport)).unwrap();
    for (key, value) in fields {
        Reflect::set(&object, &JsValue::from_str(key), value).unwrap();
    }
    object.into()
}

/// `await promise`.
pub async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

/// The message of a rejection's `Error`.
pub fn error_text(error: &JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("not an Error: {error:?}"))
}

/// A listener that records each argument it is called with.
#[derive(Debug)]
pub struct Recorder {
    pub calls: Rc<RefCell<Vec<JsValue>>>,
    closure: Closure<dyn FnMut(JsValue)>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let log = calls.clone();
        let closure = Closure::<dyn FnMut(JsValue)>::new(move |value| log.borrow_mut().push(value));
        Self { calls, closure }
    }

    pub fn function(&self) -> Function {
        self.closure.as_ref().unchecked_ref::<Function>().clone()
    }

    /// Waits until a call satisfies `f`, and returns its argument.
    pub async fn until(&self, what: &str, f: impl Fn(&JsValue) -> bool) -> JsValue {
        let calls = self.calls.clone();
        let found = p2pmesh_rt::timeout(PATIENCE, async move {
            loop {
                if let Some(v) = calls.borrow().iter().find(|v| f(v)) {
                    return v.clone();
                }
                p2pmesh_rt::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("gave up waiting: {what}"))
    }
}

/// `value[key]`.
pub fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).unwrap()
}

/// Listens to `event` of `mesh`.
pub fn listen(mesh: &Mesh, event: &str) -> Recorder {
    let recorder = Recorder::new();
    mesh.on(event, recorder.function());
    recorder
}
