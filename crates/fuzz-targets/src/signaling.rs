//! The signaling protocol's JSON, both ways.

use transport::ServerMessage;

/// A client's message as the signaling server parses it (a connection's first step for every text
/// frame); see `signaling_server::fuzzing::client_message` for the invariants.
pub fn signaling_client_message(data: &[u8]) {
    // A WebSocket text frame is UTF-8 (tungstenite refuses others before the server sees them).
    if let Ok(text) = core::str::from_utf8(data) {
        signaling_server::fuzzing::client_message(text);
    }
}

/// A server's message as a client parses it (transport-ws reads every text frame as a
/// [`ServerMessage`]): never a panic, and what it parsed it writes back into something it parses
/// again (a client that relays or logs it does not choke on its own output).
pub fn signaling_server_message(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = serde_json::from_str::<ServerMessage>(text) else {
        return;
    };
    let again = serde_json::to_string(&message).expect("a parsed message serializes");
    let back = serde_json::from_str::<ServerMessage>(&again).expect("a written message parses");
    assert_eq!(
        core::mem::discriminant(&back),
        core::mem::discriminant(&message)
    );
}

/// What another server of a signaling cluster publishes through Redis, as a server decodes it;
/// see `signaling_server::fuzzing::cluster_message`.
pub fn signaling_cluster_message(data: &[u8]) {
    signaling_server::fuzzing::cluster_message(data);
}
