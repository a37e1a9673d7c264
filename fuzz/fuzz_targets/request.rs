#![no_main]
//! The HTTP request-to-parameters parser on arbitrary bodies: every route's parsing (chat
//! messages, prompts, OpenAI and Ollama sampling parameters, embedding inputs) answers an
//! error or parameters, never a panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    realizar_server::fuzzing::parse_request(data);
});
