#![no_main]
//! Chat templates rendering hostile conversations: the real templates' constructs (loops,
//! conditions, `raise_exception`, filters, string methods) over arbitrary roles and contents
//! never panic or hang; errors are fine.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use realizar_tokenize::{ChatMessage, ChatTemplate};

const TEMPLATES: [&str; 4] = [
    // ChatML with a default system prompt (SmolLM2's).
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    // Gemma's: alternation check, role mapping, trim.
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') }}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
    // Llama 3's: header ids, strip, loop variables.
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    // Qwen3-like: string methods, splits, reverse search, JSON.
    "{%- for message in messages %}{%- if message.role == 'assistant' and '</think>' in message.content %}{%- set content = message.content.split('</think>')[-1].lstrip('\n') %}{%- else %}{%- set content = message.content %}{%- endif %}{{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}{%- endfor %}{{ messages | tojson }}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}",
];

fn templates() -> &'static [ChatTemplate] {
    static T: OnceLock<Vec<ChatTemplate>> = OnceLock::new();
    T.get_or_init(|| {
        TEMPLATES
            .iter()
            .map(|s| ChatTemplate::new(s, "<s>", "</s>").expect("template compiles"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Messages: parts separated by \x1e, each `role\x1fcontent`.
    let messages: Vec<ChatMessage> = text
        .split('\u{1e}')
        .take(64)
        .map(|m| match m.split_once('\u{1f}') {
            Some((role, content)) => ChatMessage::new(role, content),
            None => ChatMessage::new("user", m),
        })
        .collect();
    for t in templates() {
        for gen in [false, true] {
            let _ = t.render(&messages, gen);
        }
    }
});
