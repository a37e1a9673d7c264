"""Generate reference renderings of real chat templates WITH tools, made by
Hugging Face transformers' own Jinja rendering (no model download, no torch).

Run from the repository root:

    python3 -m venv target/chat-refs-venv
    target/chat-refs-venv/bin/pip install transformers jinja2
    target/chat-refs-venv/bin/python xtask/refgen/chat_tool_refs.py \
        ~/.cache/realizar-peers/llamacpp/src/vendor/llama.cpp/models/templates

It copies the templates it uses (exact bytes) into
crates/realizar-tokenize/tests/data/templates/ and writes
crates/realizar-tokenize/tests/data/chat_tool_refs.json, a list of cases:
{"template", "bos", "eos", "now", "messages", "tools", "add_generation_prompt",
 "kwargs", "expected"} -- or "error": true (and "error_message") instead of
"expected" when the template raises.

Rendering goes through transformers.utils.chat_template_utils.render_jinja_template,
i.e. ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, loopcontrols]), json.dumps-based `tojson`
(ensure_ascii=False, no HTML escaping), globals raise_exception / strftime_now /
dict / namespace. bos_token / eos_token / kwargs are passed as extra render
variables, exactly as tokenizer.apply_chat_template does. strftime_now is pinned
to NOW (UTC) so that the output is deterministic.
"""
import copy
import json
import os
import shutil
import sys
from datetime import datetime, timezone

from transformers.utils import chat_template_utils as ctu

NOW = datetime(2024, 7, 26, 0, 0, 0, tzinfo=timezone.utc)
NOW_STR = "2024-07-26T00:00:00Z"
BASE_KWARGS = {"date_string": "26 Jul 2024"}

QWEN = ("", "<|endoftext|>")  # neither Qwen template reads bos_token/eos_token
LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
MISTRAL = ("<s>", "</s>")
TEMPLATES = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": QWEN,
    "Qwen-Qwen3-0.6B.jinja": QWEN,
    "meta-llama-Llama-3.1-8B-Instruct.jinja": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct.jinja": LLAMA3,
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": MISTRAL,
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": ("<|begin_of_text|>", "<|im_end|>"),
    "HuggingFaceTB-SmolLM3-3B.jinja": ("", "<|im_end|>"),
    "openai-gpt-oss-120b.jinja": ("<|startoftext|>", "<|return|>"),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": MISTRAL,
}
THINKING_TEMPLATES = {"Qwen-Qwen3-0.6B.jinja", "HuggingFaceTB-SmolLM3-3B.jinja"}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Add two integers",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"]}}},
]

CONV_A = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What's the weather in Paris?"},
]
# 9-character alphanumeric ids everywhere (Mistral templates require them).
CONV_B = [
    {"role": "user", "content": "What's the weather in Paris and 2+3?"},
    {"role": "assistant", "tool_calls": [
        {"id": "call00001", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call00002", "type": "function",
         "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
    {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "{\"temp\": 21}"},
    {"role": "tool", "tool_call_id": "call00002", "name": "add", "content": "5"},
]
CONV_E = copy.deepcopy(CONV_B)
CONV_E[1] = {"role": "assistant", "content": "", "tool_calls": CONV_E[1]["tool_calls"]}


def cases_for(name):
    yield "a", CONV_A, TOOLS, {}
    yield "b", CONV_B, TOOLS, {}
    yield "c", CONV_A, None, {}
    if name in THINKING_TEMPLATES:
        yield "d", CONV_A, TOOLS, {"enable_thinking": False}
    yield "e", CONV_E, TOOLS, {}


def render(source, messages, tools, bos, eos, kwargs):
    # render_jinja_template compiles through an lru_cache, so pinning strftime_now in
    # the cached template's own globals (a ChainMap layer over the environment's
    # globals) affects exactly the template that is rendered next.
    compiled = ctu._compile_jinja_template(source)
    compiled.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)
    out, _ = ctu.render_jinja_template(
        conversations=[copy.deepcopy(messages)], tools=copy.deepcopy(tools),
        chat_template=source, add_generation_prompt=True,
        bos_token=bos, eos_token=eos, **kwargs)
    return out[0]


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} TEMPLATES_DIR")
    src_dir = os.path.expanduser(sys.argv[1])
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    data = os.path.join(repo, "crates", "realizar-tokenize", "tests", "data")
    tpl_out = os.path.join(data, "templates")
    os.makedirs(tpl_out, exist_ok=True)

    cases = []
    for name, (bos, eos) in TEMPLATES.items():
        path = os.path.join(src_dir, name)
        shutil.copyfile(path, os.path.join(tpl_out, name))
        with open(path, "rb") as f:  # exact bytes, no newline translation
            source = f.read().decode("utf-8")
        for label, messages, tools, extra in cases_for(name):
            kwargs = {**BASE_KWARGS, **extra}
            case = {"template": name, "case": label, "bos": bos, "eos": eos, "now": NOW_STR,
                    "messages": messages, "tools": tools,
                    "add_generation_prompt": True, "kwargs": kwargs}
            try:
                case["expected"] = render(source, messages, tools, bos, eos, kwargs)
                status = "ok"
            except Exception as e:  # noqa: BLE001 - template errors are data here
                case["error"] = True
                case["error_message"] = f"{type(e).__name__}: {e}"
                status = "RAISED " + case["error_message"]
            cases.append(case)
            print(f"{name} ({label}): {status}")

    out = os.path.join(data, "chat_tool_refs.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
