// Loss curves from log_history as SVG (vega-lite) or PNG (resvg).
import { writeFile } from "node:fs/promises";
import { extname } from "node:path";
import { invalid, InvalidArgumentError } from "./errors.js";

export type LogRow = Record<string, number>;

/** The vega-lite spec of train and eval loss against step. */
export function loss_chart_spec(
  log_history: LogRow[],
  title = "Training and evaluation loss",
): Record<string, unknown> {
  const values: { step: number; loss: number; series: string }[] = [];
  for (const r of log_history) {
    if (typeof r.loss === "number" && Number.isFinite(r.loss))
      values.push({ step: r.step!, loss: r.loss, series: "train loss" });
    else if (typeof r.eval_loss === "number" && Number.isFinite(r.eval_loss))
      values.push({ step: r.step!, loss: r.eval_loss, series: "eval loss" });
  }
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title,
    width: 640,
    height: 360,
    background: "white",
    data: { values },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "step", type: "quantitative", title: "Step" },
      y: { field: "loss", type: "quantitative", title: "Loss", scale: { zero: false } },
      color: {
        field: "series",
        type: "nominal",
        title: null,
        scale: { domain: ["train loss", "eval loss"], range: ["#1f77b4", "#ff7f0e"] },
      },
    },
  };
}

/** The chart as an SVG string. */
export async function loss_chart_svg(log_history: LogRow[], title?: string): Promise<string> {
  const vl = await import("vega-lite");
  const vega = await import("vega");
  const spec = vl.compile(loss_chart_spec(log_history, title) as never).spec;
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/**
 * Writes the train and eval loss curves of `trainer.state.log_history` to `file`: SVG when the name ends
 * in .svg, PNG otherwise.
 */
export async function plot_log_history(
  log_history: LogRow[],
  file: string,
  options: { title?: string } = {},
): Promise<string> {
  if (!Array.isArray(log_history))
    throw invalid("log_history", "an array of log rows (trainer.state.log_history)", log_history);
  if (typeof file !== "string" || !file) throw invalid("file", "a file name ending in .png or .svg", file);
  if (!log_history.some((r) => typeof r.loss === "number" || typeof r.eval_loss === "number"))
    throw new InvalidArgumentError("log_history has no loss or eval_loss rows to plot");
  const svg = await loss_chart_svg(log_history, options.title);
  if (extname(file).toLowerCase() === ".svg") {
    await writeFile(file, svg);
    return file;
  }
  const { Resvg } = await import("@resvg/resvg-js");
  const png = new Resvg(svg, {
    background: "white",
    fitTo: { mode: "zoom", value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" },
  })
    .render()
    .asPng();
  await writeFile(file, png);
  return file;
}
