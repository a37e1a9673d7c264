// refgen: llama.cpp's reference outputs for a model file, as the JSON the tests read.
//
// Built and run by `cargo xtask refs` against the llama.cpp of ../shared/tools/llamacpp-peer (the
// commit the shared references were made with); nothing of it runs in CI. For each prompt (read
// from a file, prompts separated by a line holding only "\x1e"): its ids
// (add_special, no special parsing), the argmax and top-2 margin at every prompt position
// (teacher forcing), then `n_predict` greedy steps (argmax, lowest id on ties; EOS does not stop)
// with each step's top-5 and top-2 margin. Settings as in ../shared/refs: 2 threads, flash
// attention off, f16 KV cache, prompt evaluated in batches of 512.
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void json_str(const std::string & s) {
    putchar('"');
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { printf("\\%c", c); }
        else if (c < 0x20) { printf("\\u%04x", c); }
        else { putchar(c); }
    }
    putchar('"');
}

struct Top { int id; float logit; };

static std::vector<Top> top_k(const float * l, int n, int k) {
    std::vector<Top> t;
    for (int i = 0; i < n; i++) {
        Top x{i, l[i]};
        if ((int) t.size() < k || x.logit > t.back().logit) {
            auto pos = std::upper_bound(t.begin(), t.end(), x,
                [](const Top & a, const Top & b) { return a.logit > b.logit; });
            t.insert(pos, x);
            if ((int) t.size() > k) t.pop_back();
        }
    }
    return t;
}

// `refgen --chat CONVERSATIONS NAME...`: llama_chat_apply_template's rendering of each
// conversation (messages separated by \x1d, role and content by \x1f, conversations by a
// line holding only \x1e) with each built-in template NAME, with and without the assistant
// prefix: {"NAME": [[with, without], ...], ...}.
static int chat_refs(int argc, char ** argv) {
    std::ifstream f(argv[2]);
    std::stringstream ss; ss << f.rdbuf();
    std::string all = ss.str();
    std::vector<std::vector<std::pair<std::string, std::string>>> convs;
    size_t at = 0;
    while (at < all.size()) {
        size_t e = all.find("\n\x1e\n", at);
        std::string c = all.substr(at, e == std::string::npos ? std::string::npos : e - at);
        at = e == std::string::npos ? all.size() : e + 3;
        std::vector<std::pair<std::string, std::string>> msgs;
        size_t m = 0;
        while (m <= c.size()) {
            size_t me = c.find('\x1d', m);
            std::string msg = c.substr(m, me == std::string::npos ? std::string::npos : me - m);
            size_t sep = msg.find('\x1f');
            msgs.push_back({msg.substr(0, sep), msg.substr(sep + 1)});
            if (me == std::string::npos) break;
            m = me + 1;
        }
        convs.push_back(msgs);
    }
    printf("{");
    for (int a = 3; a < argc; a++) {
        printf("%s\n", a > 3 ? "," : "");
        json_str(argv[a]);
        printf(": [");
        for (size_t c = 0; c < convs.size(); c++) {
            std::vector<llama_chat_message> chat;
            for (auto & m : convs[c]) chat.push_back({m.first.c_str(), m.second.c_str()});
            printf("%s[", c ? "," : "");
            for (int add = 1; add >= 0; add--) {
                std::vector<char> buf(1 << 20);
                int n = llama_chat_apply_template(argv[a], chat.data(), chat.size(), add, buf.data(), (int) buf.size());
                if (n < 0 || n > (int) buf.size()) { fprintf(stderr, "refgen: template %s failed\n", argv[a]); return 1; }
                if (add == 0) printf(",");
                json_str(std::string(buf.data(), n));
            }
            printf("]");
        }
        printf("]");
    }
    printf("\n}\n");
    return 0;
}

// `refgen --tokenize MODEL LINES`: llama_tokenize's ids (add_special, with and without
// special parsing) of each text (texts separated by a line holding only \x1e), loading the
// vocabulary only: {"plain": [[ids], ...], "special": [[ids], ...]}.
static int tokenize_refs(const char * path, const char * lines_path) {
    std::ifstream f(lines_path);
    std::stringstream ss; ss << f.rdbuf();
    std::string all = ss.str();
    std::vector<std::string> lines;
    size_t at = 0;
    while (true) {
        size_t e = all.find("\n\x1e\n", at);
        if (e == std::string::npos) { lines.push_back(all.substr(at)); break; }
        lines.push_back(all.substr(at, e - at));
        at = e + 3;
    }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "refgen: cannot load %s\n", path); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    printf("{");
    for (int special = 0; special < 2; special++) {
        printf("%s\"%s\": [", special ? ",\n" : "", special ? "special" : "plain");
        for (size_t i = 0; i < lines.size(); i++) {
            std::vector<llama_token> ids(lines[i].size() * 4 + 8);
            int n = llama_tokenize(vocab, lines[i].c_str(), (int) lines[i].size(), ids.data(), (int) ids.size(), true, special);
            if (n < 0) { fprintf(stderr, "refgen: tokenize failed\n"); return 1; }
            printf("%s\n[", i ? "," : "");
            for (int j = 0; j < n; j++) printf("%s%d", j ? "," : "", ids[j]);
            printf("]");
        }
        printf("]");
    }
    printf("}\n");
    llama_model_free(model);
    return 0;
}

// `refgen --chat-run MODEL TEMPLATE CONVERSATION N`: a chat as llama-server answers it with a
// built-in template at temperature 0: the conversation (refgen --chat's format) rendered by
// llama_chat_apply_template(TEMPLATE, add_ass), tokenized with add_special and special parsing,
// then up to N greedy tokens, stopping at an end-of-generation token (not included):
// {"prompt", "prompt_ids", "greedy_ids", "greedy_margin", "greedy_bytes", "text"}.
static int chat_run(const char * path, const char * tmpl, const char * conv_path, int n_predict) {
    std::ifstream f(conv_path);
    std::stringstream ss; ss << f.rdbuf();
    std::string c = ss.str();
    std::vector<std::pair<std::string, std::string>> msgs;
    size_t m = 0;
    while (m <= c.size()) {
        size_t me = c.find('\x1d', m);
        std::string msg = c.substr(m, me == std::string::npos ? std::string::npos : me - m);
        size_t sep = msg.find('\x1f');
        msgs.push_back({msg.substr(0, sep), msg.substr(sep + 1)});
        if (me == std::string::npos) break;
        m = me + 1;
    }
    std::vector<llama_chat_message> chat;
    for (auto & x : msgs) chat.push_back({x.first.c_str(), x.second.c_str()});
    std::vector<char> buf(1 << 20);
    int n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), true, buf.data(), (int) buf.size());
    if (n < 0 || n > (int) buf.size()) { fprintf(stderr, "refgen: template %s failed\n", tmpl); return 1; }
    std::string prompt(buf.data(), n);

    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(path, llama_model_default_params());
    if (!model) { fprintf(stderr, "refgen: cannot load %s\n", path); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    auto cp = llama_context_default_params();
    cp.n_ctx = 1024; cp.n_batch = 512; cp.n_ubatch = 512;
    cp.n_threads = 2; cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    std::vector<llama_token> ids(prompt.size() + 8);
    int np = llama_tokenize(vocab, prompt.c_str(), (int) prompt.size(), ids.data(), (int) ids.size(), true, true);
    if (np < 0) { fprintf(stderr, "refgen: tokenize failed\n"); return 1; }
    ids.resize(np);
    if (llama_decode(ctx, llama_batch_get_one(ids.data(), np)) != 0) { fprintf(stderr, "refgen: decode failed\n"); return 1; }
    std::vector<llama_token> out;
    std::vector<float> margins;
    for (int s = 0; s < n_predict; s++) {
        auto t = top_k(llama_get_logits_ith(ctx, -1), n_vocab, 2);
        llama_token next = t[0].id;
        if (llama_vocab_is_eog(vocab, next)) break;
        out.push_back(next);
        margins.push_back(t[0].logit - t[1].logit);
        if (llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0) { fprintf(stderr, "refgen: decode failed\n"); return 1; }
    }
    std::vector<char> text(1 << 16);
    int nt = llama_detokenize(vocab, out.data(), (int) out.size(), text.data(), (int) text.size(), false, false);
    if (nt < 0) { fprintf(stderr, "refgen: detokenize failed\n"); return 1; }
    printf("{\"template\": "); json_str(tmpl);
    printf(", \"prompt\": "); json_str(prompt);
    printf(", \"prompt_ids\": [");
    for (int i = 0; i < np; i++) printf("%s%d", i ? "," : "", ids[i]);
    printf("], \"greedy_ids\": [");
    for (size_t i = 0; i < out.size(); i++) printf("%s%d", i ? "," : "", out[i]);
    printf("], \"greedy_margin\": [");
    for (size_t i = 0; i < margins.size(); i++) printf("%s%.5f", i ? "," : "", margins[i]);
    printf("], \"greedy_bytes\": [");
    for (size_t i = 0; i < out.size(); i++) {
        char piece[256];
        int pn = llama_token_to_piece(vocab, out[i], piece, sizeof(piece), 0, false);
        printf("%s[", i ? "," : "");
        for (int j = 0; j < pn; j++) printf("%s%d", j ? "," : "", (unsigned char) piece[j]);
        printf("]");
    }
    printf("], \"text\": "); json_str(std::string(text.data(), nt));
    printf("}\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

int main(int argc, char ** argv) {
    if (argc == 6 && std::string(argv[1]) == "--chat-run") {
        return chat_run(argv[2], argv[3], argv[4], atoi(argv[5]));
    }
    if (argc == 4 && std::string(argv[1]) == "--tokenize") {
        return tokenize_refs(argv[2], argv[3]);
    }
    if (argc >= 4 && std::string(argv[1]) == "--chat") {
        return chat_refs(argc, argv);
    }
    if (argc != 5) {
        fprintf(stderr, "usage: refgen MODEL.gguf PROMPTS.txt N_PREDICT N_CTX | refgen --chat CONVERSATIONS NAME...\n");
        return 2;
    }
    const char * path = argv[1];
    std::ifstream pf(argv[2]);
    std::stringstream ss; ss << pf.rdbuf();
    std::string all = ss.str();
    std::vector<std::string> prompts;
    {
        std::string sep = "\n\x1e\n";
        size_t at = 0;
        while (true) {
            size_t e = all.find(sep, at);
            if (e == std::string::npos) { prompts.push_back(all.substr(at)); break; }
            prompts.push_back(all.substr(at, e - at));
            at = e + sep.size();
        }
        if (!prompts.empty() && !prompts.back().empty() && prompts.back().back() == '\n') prompts.back().pop_back();
    }
    const int n_predict = atoi(argv[3]);
    const int n_ctx = atoi(argv[4]);

    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "refgen: cannot load %s\n", path); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    printf("{\"model\": "); json_str(path);
    printf(", \"n_vocab\": %d, \"prompts\": [", n_vocab);
    for (size_t p = 0; p < prompts.size(); p++) {
        auto cp = llama_context_default_params();
        cp.n_ctx = n_ctx; cp.n_batch = 512; cp.n_ubatch = 512;
        cp.n_threads = 2; cp.n_threads_batch = 2;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) { fprintf(stderr, "refgen: no context\n"); return 1; }
        const std::string & text = prompts[p];
        std::vector<llama_token> ids(text.size() + 8);
        int n = llama_tokenize(vocab, text.c_str(), (int) text.size(), ids.data(), (int) ids.size(), true, false);
        if (n < 0) { fprintf(stderr, "refgen: tokenize failed\n"); return 1; }
        ids.resize(n);
        std::vector<int> pos_top1; std::vector<float> pos_margin;
        llama_batch batch = llama_batch_init(512, 0, 1);
        for (int start = 0; start < n; start += 512) {
            int m = std::min(512, n - start);
            batch.n_tokens = m;
            for (int i = 0; i < m; i++) {
                batch.token[i] = ids[start + i]; batch.pos[i] = start + i;
                batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0; batch.logits[i] = 1;
            }
            if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "refgen: decode failed\n"); return 1; }
            for (int i = 0; i < m; i++) {
                auto t = top_k(llama_get_logits_ith(ctx, i), n_vocab, 2);
                pos_top1.push_back(t[0].id); pos_margin.push_back(t[0].logit - t[1].logit);
            }
        }
        llama_batch_free(batch);
        std::vector<llama_token> out;
        std::vector<std::vector<Top>> tops;
        const float * logits = llama_get_logits_ith(ctx, -1);
        for (int s = 0; s < n_predict; s++) {
            auto t = top_k(logits, n_vocab, 5);
            tops.push_back(t);
            llama_token next = t[0].id;
            out.push_back(next);
            if (s + 1 == n_predict) break;
            llama_batch one = llama_batch_get_one(&next, 1);
            if (llama_decode(ctx, one) != 0) { fprintf(stderr, "refgen: decode failed\n"); return 1; }
            logits = llama_get_logits_ith(ctx, -1);
        }
        printf("%s\n{\"prompt\": ", p ? "," : "");
        json_str(text);
        printf(", \"prompt_ids\": [");
        for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("], \"prompt_top1\": [");
        for (size_t i = 0; i < pos_top1.size(); i++) printf("%s%d", i ? "," : "", pos_top1[i]);
        printf("], \"prompt_margin\": [");
        for (size_t i = 0; i < pos_margin.size(); i++) printf("%s%.5f", i ? "," : "", pos_margin[i]);
        printf("], \"greedy_ids\": [");
        for (size_t i = 0; i < out.size(); i++) printf("%s%d", i ? "," : "", out[i]);
        printf("], \"greedy_margin\": [");
        for (size_t i = 0; i < tops.size(); i++) printf("%s%.5f", i ? "," : "", tops[i][0].logit - tops[i][1].logit);
        printf("], \"greedy_top5\": [");
        for (size_t i = 0; i < tops.size(); i++) {
            printf("%s[", i ? "," : "");
            for (size_t j = 0; j < tops[i].size(); j++) printf("%s%d", j ? "," : "", tops[i][j].id);
            printf("]");
        }
        printf("]}");
        llama_free(ctx);
    }
    printf("\n]}\n");
    llama_model_free(model);
    return 0;
}
