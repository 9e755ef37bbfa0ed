// TensorBoard event files, as Hugging Face's TensorBoardCallback writes them through torch.utils.tensorboard's
// SummaryWriter: scalars under "train/..." and "eval/...", one file per run in the logging directory. Each event is a
// TFRecord: its length (uint64, little-endian), the length's masked CRC32C, the Event protobuf, the data's masked
// CRC32C.
import { appendFileSync, mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";
import protobuf from "protobufjs";
import { check } from "./errors.js";
import { TrainerCallback, type CallbackArgs, type LogRow } from "./callbacks.js";

// The fields of TensorFlow's event.proto and summary.proto that scalars use, with their numbers.
const { Event } = protobuf.parse(
  `
  syntax = "proto3";
  message Summary { message Value { string tag = 1; float simple_value = 2; } repeated Value value = 1; }
  message Event { double wall_time = 1; int64 step = 2; oneof what { string file_version = 3; Summary summary = 5; } }
`,
  { keepCase: true },
).root.nested as unknown as { Event: protobuf.Type };

/** TensorFlow's masked CRC32C (a CRC of data that holds CRCs is itself a poor check). */
function maskedCrc(data: Uint8Array): number {
  const crc = crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength)) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

function record(data: Uint8Array): Buffer {
  const header = Buffer.alloc(12);
  header.writeBigUInt64LE(BigInt(data.length), 0);
  header.writeUInt32LE(maskedCrc(header.subarray(0, 8)), 8);
  const footer = Buffer.alloc(4);
  footer.writeUInt32LE(maskedCrc(data), 0);
  return Buffer.concat([header, data, footer]);
}

/** torch.utils.tensorboard's SummaryWriter, for scalars: `events.out.tfevents.<time>.<host>.<pid>.<n>` in log_dir. */
export class SummaryWriter {
  static #count = 0;
  readonly log_dir: string;
  /** The event file. */
  readonly path: string;

  constructor(log_dir: string) {
    this.log_dir = check.string("log_dir", log_dir);
    mkdirSync(log_dir, { recursive: true });
    this.path = join(
      log_dir,
      `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${hostname()}.${process.pid}.${SummaryWriter.#count++}`,
    );
    this.#write({ wall_time: Date.now() / 1000, file_version: "brain.Event:2" });
  }

  /** Appends one scalar at `global_step`. */
  add_scalar(tag: string, scalar_value: number, global_step: number): void {
    check.string("tag", tag);
    check.number("scalar_value", scalar_value);
    check.integer("global_step", global_step, 0);
    this.#write({
      wall_time: Date.now() / 1000,
      step: global_step,
      summary: { value: [{ tag, simple_value: scalar_value }] },
    });
  }

  // Each event is appended whole and synchronously: a run killed between logs leaves a file TensorBoard reads.
  #write(event: Record<string, unknown>): void {
    appendFileSync(this.path, record(Event.encode(Event.fromObject(event)).finish()));
  }
}

/** Hugging Face's rewrite_logs: eval_x as eval/x, test_x as test/x, everything else under train/. */
export function rewrite_logs(logs: LogRow): LogRow {
  const out: LogRow = {};
  for (const [k, v] of Object.entries(logs)) {
    if (k.startsWith("eval_")) out[`eval/${k.slice(5)}`] = v;
    else if (k.startsWith("test_")) out[`test/${k.slice(5)}`] = v;
    else out[`train/${k}`] = v;
  }
  return out;
}

/** Hugging Face's default logging directory: output_dir/runs/<Mon DD_HH-MM-SS>_<host>. */
export function default_logdir(output_dir: string): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, "0");
  const month = d.toLocaleString("en-US", { month: "short" });
  return join(
    output_dir,
    "runs",
    `${month}${p(d.getDate())}_${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}_${hostname()}`,
  );
}

/**
 * Writes the Trainer's logs as TensorBoard scalars (report_to: "tensorboard" adds it), on the main process only: into
 * logging_dir, else $TENSORBOARD_LOGGING_DIR, else output_dir/runs/<time>_<host>, as Hugging Face does.
 */
export class TensorBoardCallback extends TrainerCallback {
  tb_writer: SummaryWriter | null = null;

  override on_train_begin({ args, state }: CallbackArgs): void {
    if (!state.is_world_process_zero || this.tb_writer) return;
    this.tb_writer = new SummaryWriter(
      args.logging_dir ?? process.env.TENSORBOARD_LOGGING_DIR ?? default_logdir(args.output_dir),
    );
  }

  override on_log({ state, logs }: CallbackArgs & { logs: LogRow }): void {
    if (!this.tb_writer) return;
    // "step" is the event's own step, not a scalar (Hugging Face's callbacks get the logs without it)
    const { step: _, ...rest } = logs;
    for (const [k, v] of Object.entries(rewrite_logs(rest)))
      if (typeof v === "number" && Number.isFinite(v)) this.tb_writer.add_scalar(k, v, state.global_step);
  }

  override on_train_end(): void {
    this.tb_writer = null;
  }
}
