// A small Hugging Face Hub on 127.0.0.1 answering the routes @huggingface/hub uses to download files:
// POST /api/{models,datasets}/<id>/paths-info/<rev>, GET /api/.../tree/<rev>, GET
// [/datasets]/<id>/resolve/<rev>/<path>.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Repo {
  type: "model" | "dataset";
  id: string;
  files: Record<string, Buffer>;
}
export const COMMIT = "0123456789abcdef0123456789abcdef01234567";

export class HubServer {
  server: Server;
  url = "";
  requests: { method: string; url: string; auth?: string }[] = [];
  constructor(public repos: Repo[]) {
    this.server = createServer((req, res) => this.handle(req, res));
  }
  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
  #repo(type: string, id: string): Repo | undefined {
    return this.repos.find((r) => r.type === type && r.id === id);
  }
  #entry(path: string, data: Buffer) {
    const sha = createHash("sha256").update(data).digest("hex");
    return {
      type: "file",
      path,
      size: data.length,
      oid: createHash("sha1").update(data).digest("hex"),
      lfs: { oid: sha, size: data.length },
      lastCommit: { id: COMMIT, date: "2026-01-01T00:00:00.000Z", title: "test" },
    };
  }
  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, "http://x");
    this.requests.push({ method: req.method!, url: url.pathname, auth: req.headers.authorization });
    const body: Buffer[] = [];
    req.on("data", (c) => body.push(c));
    req.on("end", () => {
      let m = /^\/api\/(models|datasets)\/(.+)\/paths-info\/([^/]+)$/.exec(url.pathname);
      if (m && req.method === "POST") {
        const repo = this.#repo(m[1]!.slice(0, -1), decodeURIComponent(m[2]!));
        if (!repo) return this.#notFound(res, "RepoNotFound");
        const { paths } = JSON.parse(Buffer.concat(body).toString() || "{}");
        res.setHeader("Content-Type", "application/json");
        return res.end(
          JSON.stringify((paths as string[]).filter((p) => repo.files[p]).map((p) => this.#entry(p, repo.files[p]!))),
        );
      }
      m = /^\/api\/(models|datasets)\/(.+)\/tree\/([^/]+)(\/.*)?$/.exec(url.pathname);
      if (m) {
        const repo = this.#repo(m[1]!.slice(0, -1), decodeURIComponent(m[2]!));
        if (!repo) return this.#notFound(res, "RepoNotFound");
        res.setHeader("Content-Type", "application/json");
        return res.end(JSON.stringify(Object.entries(repo.files).map(([p, d]) => this.#entry(p, d))));
      }
      m = /^\/(datasets\/)?(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
      if (m) {
        const repo = this.#repo(m[1] ? "dataset" : "model", decodeURIComponent(m[2]!));
        const data = repo?.files[decodeURIComponent(m[4]!)];
        if (!data) return this.#notFound(res, "EntryNotFound");
        const etag = `"${createHash("sha256").update(data).digest("hex")}"`;
        res.setHeader("ETag", etag);
        res.setHeader("X-Repo-Commit", COMMIT);
        const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? "");
        if (range) {
          const start = Number(range[1]);
          const end = range[2] ? Math.min(Number(range[2]), data.length - 1) : data.length - 1;
          res.statusCode = 206;
          res.setHeader("Content-Range", `bytes ${start}-${end}/${data.length}`);
          res.setHeader("Content-Length", String(end - start + 1));
          return res.end(req.method === "HEAD" ? undefined : data.subarray(start, end + 1));
        }
        res.setHeader("Content-Length", String(data.length));
        return res.end(req.method === "HEAD" ? undefined : data);
      }
      this.#notFound(res, "NotFound");
    });
  }
  #notFound(res: ServerResponse, code: string) {
    res.statusCode = 404;
    res.setHeader("X-Error-Code", code);
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ error: code }));
  }
}
