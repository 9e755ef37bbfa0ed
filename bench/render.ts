// The bench's table and notes from what bench/measure.ts measured, and the files in bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Measured, ScalingRow } from "./measure.js";

/** "equal <whose> for all 128" or for the first n: where greedy tokens first differ (-1: nowhere). */
function equalFor(firstDifference: number, whose: string): string {
  return firstDifference < 0 ? `equal ${whose} for all 128` : `equal ${whose} for the first ${firstDifference} of 128`;
}

/** The markdown table (torchlm beside each peer, with ratios) and the notes under it. */
export function render(m: Measured): { table: string[]; extra: string[] } {
  const { results, hfr, hfReady, py, js, rounds, weightsBytes, sameTokensHf, sameTokens, libtorch } = m;
  const L = results.train_long_context ?? 1024;
  const rows: [string, number | undefined, number | undefined, number | undefined, number | undefined][] = [
    [
      "forward tokens/s (16 x 64)",
      results.forward_tokens_per_s,
      hfr.forward_tokens_per_s,
      py?.forward_tokens_per_s,
      js?.forward_tokens_per_s,
    ],
    [
      "training tokens/s (16 x 64, AdamW, clip)",
      results.train_tokens_per_s,
      hfr.train_tokens_per_s,
      py?.train_tokens_per_s,
      undefined,
    ],
    [
      `training tokens/s (4 x ${L}, AdamW, clip)`,
      results.train_long_tokens_per_s,
      hfr.train_long_tokens_per_s,
      undefined,
      undefined,
    ],
    [
      "training tokens/s (16 x 64, bf16 autocast)",
      results.train_bf16_tokens_per_s,
      hfr.train_bf16_tokens_per_s,
      undefined,
      undefined,
    ],
    [
      "LoRA training tokens/s (16 x 64, r 8 on c_attn, c_proj, c_fc; peft)",
      results.train_lora_tokens_per_s,
      hfr.train_lora_tokens_per_s,
      undefined,
      undefined,
    ],
    [
      "greedy decode tokens/s (batch 1, 8 + 128)",
      results.decode_b1_tokens_per_s,
      hfr.decode_b1_tokens_per_s,
      py?.decode_b1_tokens_per_s,
      js?.decode_b1_tokens_per_s,
    ],
    [
      "greedy decode tokens/s (batch 8, 8 + 128)",
      results.decode_b8_tokens_per_s,
      hfr.decode_b8_tokens_per_s,
      py?.decode_b8_tokens_per_s,
      undefined,
    ],
    [
      "sampling tokens/s (batch 1, top-k 50, top-p 0.9)",
      results.sample_b1_tokens_per_s,
      undefined,
      undefined,
      undefined,
    ],
    [
      `Trainer tokens/s, ${results.ddp_ranks} ranks x 1 thread (DDP, Gloo)`,
      results.train_ddp_tokens_per_s,
      undefined,
      undefined,
      undefined,
    ],
    [
      `Trainer tokens/s, 1 process x ${results.ddp_ranks} threads`,
      results.train_1proc_tokens_per_s,
      undefined,
      undefined,
      undefined,
    ],
    [
      `training peak RSS MB (${results.checkpointing_batch} x ${results.checkpointing_context})`,
      results.train_peak_rss_mb_plain,
      undefined,
      undefined,
      undefined,
    ],
    [
      `training peak RSS MB (${results.checkpointing_batch} x ${results.checkpointing_context}, gradient ` +
        `checkpointing)`,
      results.train_peak_rss_mb_checkpointing,
      undefined,
      undefined,
      undefined,
    ],
    ["from_pretrained s", results.from_pretrained_s, hfr.load_s, py?.load_s, undefined],
    [
      "IMDB-sized load_dataset + map (25,000 reviews) s",
      results.imdb_load_and_tokenize_s,
      undefined,
      undefined,
      undefined,
    ],
  ].filter(([, v]) => v !== undefined) as [
    string,
    number | undefined,
    number | undefined,
    number | undefined,
    number | undefined,
  ][];
  const ratio = (k: string, v: number, p: number | undefined) =>
    p === undefined ? "-" : k.endsWith(" s") ? (p / v).toFixed(2) + "x faster" : (v / p).toFixed(2) + "x";
  const cell = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(2));
  const table: string[] = [
    `| measure | torchlm | transformers ${hfReady?.transformers ?? ""} | ratio | PyTorch eager | ratio | ` +
      `transformers.js | ratio |`,
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...rows.map(
      ([k, v, h, p, j]) =>
        `| ${k} | ${cell(v)} | ${cell(h)} | ${ratio(k, v!, h)} | ${cell(p)} | ${ratio(k, v!, p)} | ${cell(j)} | ` +
        `${ratio(k, v!, j)} |`,
    ),
  ];
  // decoding by weight format beside llama.cpp and CTranslate2, each in its nearest format
  const { ct2, llama } = m;
  const lf = llama?.figures,
    cf = ct2?.figures;
  const qrows: [string, number | undefined, string, number | undefined, string, number | undefined][] = [
    [
      "batch 1, float32",
      results.decode_b1_tokens_per_s,
      "f32",
      lf?.decode_b1_f32_tokens_per_s,
      "float32",
      cf?.decode_b1_float32_tokens_per_s,
    ],
    [
      "batch 1, torchlm bf16",
      results.decode_b1_bf16_tokens_per_s,
      "f16",
      lf?.decode_b1_f16_tokens_per_s,
      "",
      undefined,
    ],
    [
      "batch 1, torchlm q8",
      results.decode_b1_q8_tokens_per_s,
      "q8_0",
      lf?.decode_b1_q8_0_tokens_per_s,
      "int8",
      cf?.decode_b1_int8_tokens_per_s,
    ],
    ["batch 1, torchlm q4", results.decode_b1_q4_tokens_per_s, "q4_0", lf?.decode_b1_q4_0_tokens_per_s, "", undefined],
    ["batch 8, torchlm q8", results.decode_b8_q8_tokens_per_s, "", undefined, "int8", cf?.decode_b8_int8_tokens_per_s],
    ["batch 8, torchlm q4", results.decode_b8_q4_tokens_per_s, "", undefined, "", undefined],
  ];
  if (
    [results.decode_b1_bf16_tokens_per_s, results.decode_b1_q8_tokens_per_s, results.decode_b1_q4_tokens_per_s].some(
      (v) => v !== undefined,
    )
  ) {
    table.push(
      "",
      `| greedy decode tokens/s (8 + 128 tokens, 2 threads) | torchlm | llama.cpp (llama-cpp-python ` +
        `${llama?.version ?? "not run"}${llama ? `, timed by ${llama.timer}` : ""}) | ratio | ` +
        `CTranslate2 ${ct2?.version ?? "not run"} | ratio |`,
      "|---|---:|---:|---:|---:|---:|",
      ...qrows
        .filter(([, v]) => v !== undefined)
        .map(
          ([k, v, lt, l, ct, c]) =>
            `| ${k} | ${cell(v)} | ${l === undefined ? "-" : `${cell(l)} (${lt})`} | ${ratio(k, v!, l)} | ` +
            `${c === undefined ? "-" : `${cell(c)} (${ct})`} | ${ratio(k, v!, c)} |`,
        ),
    );
  }
  if (m.scaling) table.push("", ...scalingTable(m.scaling, "GPT-2 shape"));
  const extra = [
    `matmul ${results.matmul_gflops!.toFixed(1)} GFLOP/s, memory read ${results.memory_read_gbs!.toFixed(1)} GB/s ` +
      `(measured in this run); libtorch ` +
      `${libtorch}` +
      (hfReady
        ? `; transformers ${hfReady.transformers} on PyTorch ${hfReady.torch}, ` +
          `attention "${hfReady.attn_implementation}"`
        : ""),
    results.decode_b1_fraction_of_bandwidth_limit !== undefined
      ? `batch-1 decode at ${(100 * results.decode_b1_fraction_of_bandwidth_limit).toFixed(0)}% of the ` +
        `memory-bandwidth limit (memory read ${results.memory_read_gbs_during_decode!.toFixed(1)} GB/s, every ` +
        `thread streaming, measured between the decoding runs; forward, decode and training steps alternate with ` +
        `the peers' runs, medians of ${rounds}); ` +
        `${(100 * results.decode_b1_fraction_of_one_thread_limit!).toFixed(0)}% of one thread's streaming limit ` +
        `(${results.memory_read_one_thread_gbs_during_decode!.toFixed(1)} GB/s, ` +
        `${((results.memory_read_one_thread_gbs_during_decode! * 1e9) / weightsBytes).toFixed(0)} tokens/s)`
      : "",
    results.decode_b1_bf16_fraction_of_bandwidth_limit !== undefined
      ? `batch-1 decode with bf16 weights at ` +
        `${(100 * results.decode_b1_bf16_fraction_of_bandwidth_limit).toFixed(0)}% of the memory-bandwidth limit ` +
        `for half the bytes` +
        (results.memory_read_gbs_during_bf16 !== undefined
          ? ` (memory read ${results.memory_read_gbs_during_bf16.toFixed(1)} GB/s, measured in its rounds)`
          : "")
      : "",
    results.decode_b1_q8_tokens_per_s !== undefined
      ? `q8 weights (${results.q8_kernel_is_vnni ? "AVX-512 VNNI" : "no VNNI: the fallback"} kernel): batch-1 ` +
        `decode at ${(100 * results.decode_b1_q8_fraction_of_bandwidth_limit!).toFixed(0)}% of the memory-read ` +
        `limit for its ${(results.q8_bytes_per_token! / 1e6).toFixed(0)} MB a token (memory read ` +
        `${results.memory_read_gbs_during_q8!.toFixed(1)} GB/s in its rounds); greedy tokens ` +
        `${equalFor(results.q8_greedy_first_difference!, "fp32's")} (random weights: near-ties decide; the ` +
        `fidelity figures of a trained model are in the tests)`
      : "",
    results.decode_b1_q4_tokens_per_s !== undefined
      ? `q4 weights (the LM head in 6 bits): batch-1 decode at ` +
        `${(100 * results.decode_b1_q4_fraction_of_bandwidth_limit!).toFixed(0)}% of the memory-read limit for its ` +
        `${(results.q4_bytes_per_token! / 1e6).toFixed(0)} MB a token (memory read ` +
        `${results.memory_read_gbs_during_q4!.toFixed(1)} GB/s in its rounds); greedy tokens ` +
        `${equalFor(results.q4_greedy_first_difference!, "fp32's")} (random weights, as for q8)`
      : "",
    llama
      ? `llama.cpp: GGUF files made by its convert_hf_to_gguf.py (f32) and llama_model_quantize (f16, q8_0, ` +
        `q4_0; its q4_0 keeps the output matrix in q6_K): ` +
        Object.entries(llama.ggufBytes)
          .map(([k, v]) => `${k} ${(v / 1e6).toFixed(0)} MB`)
          .join(", ") +
        `; its f32 greedy tokens ` +
        (lf?.f32_greedy_first_difference === undefined
          ? "not compared"
          : equalFor(lf.f32_greedy_first_difference, "torchlm's float32 tokens"))
      : "",
    m.scaling
      ? `scaling table: seeded random weights of each GPT-2 size, a fresh process per size and dtype (loading the ` +
        `float32 file and converting: bf16 in 16 MB pieces, q8 and q4 one weight at a time, so peak RSS holds the ` +
        `converted model and one piece or weight, not the float32 one); tokens/s between the first and the last ` +
        `of 32 streamed tokens after a prompt that brings the context to each length`
      : "",
    results.bf16_greedy_first_difference !== undefined
      ? `bf16 weights: greedy tokens ` + equalFor(results.bf16_greedy_first_difference, "fp32's")
      : "",
    results.train_fraction_of_matmul_limit !== undefined
      ? `training (16 x 64) at ${(100 * results.train_fraction_of_matmul_limit).toFixed(0)}% of the matmul limit (6 ` +
        `FLOPs per parameter and token plus attention's, as llm.c counts)`
      : "",
    `from_pretrained: the median of 3 fresh processes (${results.from_pretrained_in_harness_s!.toFixed(2)} s inside ` +
      `this harness, after its other work); first writing as much fresh memory alone took ` +
      `${results.fresh_memory_first_touch_s!.toFixed(2)} s (median of 3 processes alternating with the loads); ` +
      `transformers' figure is its from_pretrained in the peer process`,
    `peak RSS of inference (a fresh process: load, decode 32 tokens) ` +
      `${results.inference_peak_rss_over_weights!.toFixed(2)}x the weights with Node and libtorch's code ` +
      `(${results.runtime_rss_mb!.toFixed(0)} MB before loading), ` +
      `${results.inference_model_rss_over_weights!.toFixed(2)}x for what loading and decoding added; PyTorch eager ` +
      (py?.inference_peak_rss_over_weights === undefined
        ? "not measured"
        : `${py.inference_peak_rss_over_weights.toFixed(2)}x (${py.runtime_rss_mb!.toFixed(0)} MB before loading)`) +
      `; peak RSS of this harness ${results.peak_rss_mb!.toFixed(0)} MB`,
    `peak RSS per dtype (load from the float32 file + 32 tokens, a fresh process each, over that dtype's weights): ` +
      `float32 ${results.inference_peak_rss_over_weights!.toFixed(2)}x (the model adds ` +
      `${results.inference_model_rss_over_weights!.toFixed(2)}x), bfloat16 ` +
      `${results.inference_peak_rss_bf16_over_weights!.toFixed(2)}x (the model adds ` +
      `${results.inference_model_rss_bf16_over_weights!.toFixed(2)}x)`,
    results.imdb_load_and_tokenize_s !== undefined
      ? `IMDB-sized data: ${results.imdb_rows} rows, ${results.imdb_text_mb!.toFixed(1)} MB of text, loaded from ` +
        `parquet and tokenized (max_length 64) in ${results.imdb_load_and_tokenize_s.toFixed(1)} s; RSS grew ` +
        `${results.imdb_rss_growth_mb!.toFixed(0)} MB`
      : "",
    results.train_step_s_checkpointing !== undefined
      ? `gradient checkpointing (${results.checkpointing_batch} x ${results.checkpointing_context}, fresh ` +
        `processes): peak RSS ${results.train_peak_rss_mb_checkpointing!.toFixed(0)} MB against ` +
        `${results.train_peak_rss_mb_plain!.toFixed(0)} MB without ` +
        `(${(100 * (1 - results.train_peak_rss_mb_checkpointing! / results.train_peak_rss_mb_plain!)).toFixed(0)}% ` +
        `lower), step ${results.train_step_s_checkpointing!.toFixed(1)} s against ` +
        `${results.train_step_s_plain!.toFixed(1)} s ` +
        `(${(results.train_step_s_checkpointing! / results.train_step_s_plain!).toFixed(2)}x)`
      : "",
    results.train_lora_tokens_per_s !== undefined
      ? `LoRA (r 8 on c_attn, c_proj, c_fc, 16 x 64): a step ` +
        `${(results.train_lora_tokens_per_s / results.train_full_same_run_tokens_per_s!).toFixed(2)}x as fast as ` +
        `full fine-tuning's in the same rounds (${results.train_full_same_run_tokens_per_s!.toFixed(0)} ` +
        `tokens/s); AdamW's state ${results.lora_optimizer_state_mb!.toFixed(1)} MB against ` +
        `${results.full_optimizer_state_mb!.toFixed(0)} MB ` +
        `(${((100 * results.lora_optimizer_state_mb!) / results.full_optimizer_state_mb!).toFixed(2)}%); ` +
        `adapter_model.safetensors ${results.lora_adapter_mb!.toFixed(2)} MB`
      : "",
    results.train_ddp_tokens_per_s !== undefined
      ? `data-parallel scaling: ${results.ddp_ranks} ranks reach ` +
        `${(results.train_ddp_tokens_per_s / results.train_1proc_tokens_per_s!).toFixed(2)}x the tokens/s of one ` +
        `process using the same cores`
      : "",
    sameTokensHf === undefined
      ? ""
      : sameTokensHf
        ? "greedy tokens (batch 1, 128) identical to transformers' generate on the same weights"
        : `greedy tokens (batch 1, 128) equal transformers' for the first ` +
          `${results.greedy_first_difference_from_transformers} of 128; at that step torchlm's logit for its token ` +
          `is ${results.greedy_margin_theirs_token!.toExponential(1)} above transformers' token's (its top-two ` +
          `margin ${results.greedy_top2_margin_there!.toExponential(1)}), ` +
          (Math.abs(results.greedy_margin_theirs_token!) < 1e-3
            ? "a near-tie on random weights that float32 rounding decides"
            : "more than float32 rounding explains"),
    sameTokens === undefined
      ? ""
      : `greedy tokens (batch 1, 128) ${sameTokens ? "identical to" : "DIFFERENT from"} transformers.js's on the ` +
        `same weights`,
    ...m.notes,
  ].filter(Boolean);
  return { table, extra };
}

/** bench/results/<name>.{json,md}: the figures and the rendered table. */
export function writeResults(dir: string, m: Measured, out: { table: string[]; extra: string[] }): string {
  mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
  const name = `${m.quick ? "tiny" : "gpt2-124m"}-cpu-${m.threads}t`;
  writeFileSync(
    join(dir, `${name}.json`),
    JSON.stringify(
      {
        date: stamp,
        threads: m.threads,
        libtorch: m.libtorch,
        torchlm: m.results,
        transformers: m.hfReady ? { ...m.hfReady, ...m.hfr } : null,
        pytorch_eager: m.py,
        transformers_js: m.js,
        same_greedy_tokens_as_transformers: m.sameTokensHf,
        same_greedy_tokens_as_transformers_js: m.sameTokens,
        ctranslate2: m.ct2,
        llama_cpp: m.llama,
        scaling: m.scaling,
        notes: m.notes,
      },
      null,
      2,
    ) + "\n",
  );
  writeFileSync(
    join(dir, `${name}.md`),
    `# ${name} (${stamp})\n\n${out.table.join("\n")}\n\n${out.extra.map((l) => `- ${l}`).join("\n")}\n`,
  );
  return join(dir, name);
}

/** The scaling table: a row per shape and dtype, batch-1 decoding at each context, peak RSS, load time. */
export function scalingTable(rows: ScalingRow[], shape: string): string[] {
  const ctxs = Object.keys(rows[0]?.tokens_per_s ?? {});
  return [
    `| ${shape}, weights | ${ctxs.map((c) => `batch-1 tokens/s at context ${c}`).join(" | ")} | peak RSS MB | load s |`,
    `|---|${ctxs.map(() => "---:|").join("")}---:|---:|`,
    ...rows.map(
      (x) =>
        `| ${x.size} (${(x.parameters / 1e6).toFixed(0)}M parameters), ${x.dtype} | ` +
        `${ctxs.map((c) => x.tokens_per_s[c]!.toFixed(1)).join(" | ")} | ${(x.max_rss_bytes / 1e6).toFixed(0)} ` +
        `| ${x.load_s.toFixed(1)} |`,
    ),
  ];
}
