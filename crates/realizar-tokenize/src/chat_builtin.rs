//! llama.cpp's built-in named chat templates (`llama_chat_apply_template` with a name such as
//! `chatml` or `gemma`, src/llama-chat.cpp), rendered the way its C++ code renders them:
//! for files that carry no `tokenizer.chat_template`, and for `--chat-template NAME`.

use crate::chat::ChatMessage;

/// The names of the built-in templates, as llama.cpp spells them.
pub const BUILTIN_TEMPLATES: &[&str] = &[
    "chatml",
    "llama2",
    "llama2-sys",
    "llama2-sys-bos",
    "llama2-sys-strip",
    "mistral-v1",
    "mistral-v3",
    "mistral-v3-tekken",
    "mistral-v7",
    "mistral-v7-tekken",
    "phi3",
    "phi4",
    "falcon3",
    "zephyr",
    "gemma",
    "llama3",
];

/// A built-in template, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin(&'static str);

impl Builtin {
    /// The template named `name`, if it is one of [`BUILTIN_TEMPLATES`].
    pub fn named(name: &str) -> Option<Builtin> {
        BUILTIN_TEMPLATES
            .iter()
            .find(|n| **n == name)
            .map(|n| Builtin(n))
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.0
    }

    /// The conversation as the template writes it; with `add_ass` the opening of the
    /// assistant's turn follows (for the templates that have one).
    pub fn render(self, chat: &[ChatMessage], add_ass: bool) -> String {
        let mut ss = String::new();
        match self.0 {
            "chatml" => {
                for m in chat {
                    push(
                        &mut ss,
                        &["<|im_start|>", &m.role, "\n", &m.content, "<|im_end|>\n"],
                    );
                }
                if add_ass {
                    ss.push_str("<|im_start|>assistant\n");
                }
            }
            "mistral-v7" | "mistral-v7-tekken" => {
                let sp = if self.0 == "mistral-v7" { " " } else { "" };
                for m in chat {
                    match m.role.as_str() {
                        "system" => push(
                            &mut ss,
                            &["[SYSTEM_PROMPT]", sp, &m.content, "[/SYSTEM_PROMPT]"],
                        ),
                        "user" => push(&mut ss, &["[INST]", sp, &m.content, "[/INST]"]),
                        _ => push(&mut ss, &[sp, &m.content, "</s>"]),
                    }
                }
            }
            "mistral-v1" | "mistral-v3" | "mistral-v3-tekken" => {
                let leading = if self.0 == "mistral-v1" { " " } else { "" };
                let trailing = if self.0 == "mistral-v3-tekken" {
                    ""
                } else {
                    " "
                };
                let trim_assistant = self.0 == "mistral-v3";
                let mut inside = false;
                for m in chat {
                    if !inside {
                        push(&mut ss, &[leading, "[INST]", trailing]);
                        inside = true;
                    }
                    match m.role.as_str() {
                        "system" => push(&mut ss, &[&m.content, "\n\n"]),
                        "user" => push(&mut ss, &[&m.content, leading, "[/INST]"]),
                        _ => {
                            let c = if trim_assistant {
                                trim(&m.content)
                            } else {
                                &m.content
                            };
                            push(&mut ss, &[trailing, c, "</s>"]);
                            inside = false;
                        }
                    }
                }
            }
            "llama2" | "llama2-sys" | "llama2-sys-bos" | "llama2-sys-strip" => {
                let system = self.0 != "llama2";
                let bos_inside = self.0 == "llama2-sys-bos";
                let strip = self.0 == "llama2-sys-strip";
                let mut inside = true;
                ss.push_str("[INST] ");
                for m in chat {
                    let content = if strip { trim(&m.content) } else { &m.content };
                    if !inside {
                        inside = true;
                        ss.push_str(if bos_inside { "<s>[INST] " } else { "[INST] " });
                    }
                    match m.role.as_str() {
                        "system" if system => {
                            push(&mut ss, &["<<SYS>>\n", content, "\n<</SYS>>\n\n"])
                        }
                        "system" => push(&mut ss, &[content, "\n"]),
                        "user" => push(&mut ss, &[content, " [/INST]"]),
                        _ => {
                            push(&mut ss, &[content, "</s>"]);
                            inside = false;
                        }
                    }
                }
            }
            "phi3" => {
                for m in chat {
                    push(&mut ss, &["<|", &m.role, "|>\n", &m.content, "<|end|>\n"]);
                }
                if add_ass {
                    ss.push_str("<|assistant|>\n");
                }
            }
            "phi4" => {
                for m in chat {
                    push(
                        &mut ss,
                        &[
                            "<|im_start|>",
                            &m.role,
                            "<|im_sep|>",
                            &m.content,
                            "<|im_end|>",
                        ],
                    );
                }
                if add_ass {
                    ss.push_str("<|im_start|>assistant<|im_sep|>");
                }
            }
            "falcon3" => {
                for m in chat {
                    push(&mut ss, &["<|", &m.role, "|>\n", &m.content, "\n"]);
                }
                if add_ass {
                    ss.push_str("<|assistant|>\n");
                }
            }
            "zephyr" => {
                for m in chat {
                    push(
                        &mut ss,
                        &["<|", &m.role, "|>\n", &m.content, "<|endoftext|>\n"],
                    );
                }
                if add_ass {
                    ss.push_str("<|assistant|>\n");
                }
            }
            "gemma" => {
                // No system turn: the system text opens the next user turn.
                let mut system = String::new();
                for m in chat {
                    if m.role == "system" {
                        system.push_str(trim(&m.content));
                        continue;
                    }
                    let role = if m.role == "assistant" {
                        "model"
                    } else {
                        m.role.as_str()
                    };
                    push(&mut ss, &["<start_of_turn>", role, "\n"]);
                    if !system.is_empty() && role != "model" {
                        push(&mut ss, &[&system, "\n\n"]);
                        system.clear();
                    }
                    push(&mut ss, &[trim(&m.content), "<end_of_turn>\n"]);
                }
                if add_ass {
                    ss.push_str("<start_of_turn>model\n");
                }
            }
            "llama3" => {
                for m in chat {
                    push(
                        &mut ss,
                        &[
                            "<|start_header_id|>",
                            &m.role,
                            "<|end_header_id|>\n\n",
                            trim(&m.content),
                            "<|eot_id|>",
                        ],
                    );
                }
                if add_ass {
                    ss.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
            }
            // `named` admits only the names above.
            _ => {}
        }
        ss
    }
}

fn push(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
}

/// llama.cpp's `trim`: C `isspace` (space, \t, \n, \v, \f, \r) off both ends.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

/// The built-in template of a model family, for a file that carries none: what the family's
/// own models use (gemma for Gemma, llama3 for Llama 3 vocabularies, phi3, chatml for Qwen and
/// SmolLM), else chatml (llama.cpp's server's fallback). `has_token` says whether the
/// vocabulary holds a token text.
pub fn family_template(arch: &str, has_token: &dyn Fn(&str) -> bool) -> Builtin {
    let name = match arch {
        "gemma" | "gemma2" | "gemma3" | "gemma3n" => "gemma",
        "phi3" => "phi3",
        "llama" if has_token("<|start_header_id|>") => "llama3",
        "llama" | "mistral3" if has_token("[SYSTEM_PROMPT]") => "mistral-v7",
        "llama" if has_token("[INST]") => "mistral-v3",
        "llama" if !has_token("<|im_start|>") => "llama2",
        _ => "chatml",
    };
    Builtin(name)
}
