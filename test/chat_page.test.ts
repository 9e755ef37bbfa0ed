// The chat page of torchlm serve in a real browser (Debian's chromium, driven by puppeteer-core): a conversation of
// three turns whose replies equal generate() on the rendered conversation, a reply stopped mid-stream (and cancelled on
// the server), regenerate, and the error of a refused request shown on the page.
import { existsSync } from "node:fs";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { AutoTokenizer, GPT2LMHeadModel, type ChatMessage } from "../lib/index.js";
import { serve, type Server } from "../lib/serve.js";
import { tinyModelDir } from "./helpers/tiny.js";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));
// .ci/run installs Debian's chromium; elsewhere the suite says why it did not run
const maybe = CHROMIUM ? describe : describe.skip;
if (!CHROMIUM) console.warn("chat_page.test: skipped, no chromium (apt-get install chromium)");

const TEMPLATE =
  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}";
const KEY = "sk-page";

maybe("the chat page", () => {
  let model: GPT2LMHeadModel;
  let tok: Awaited<ReturnType<typeof AutoTokenizer.from_pretrained>>;
  let server: Server;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    // slow enough that a long reply is still streaming when the test presses Stop
    const dir = tinyModelDir({ name: "page-model", config: { n_embd: 256, n_layer: 4, n_positions: 1024 } });
    tok = await AutoTokenizer.from_pretrained("gpt2");
    tok.chat_template = TEMPLATE;
    model = await GPT2LMHeadModel.from_pretrained(dir);
    server = await serve({ model, tokenizer: tok, model_name: "page-tiny", port: 0, max_batch: 2, api_key: KEY });
    browser = await puppeteer.launch({
      executablePath: CHROMIUM!,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    page = await browser.newPage();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close(1000);
    await model?.dispose();
  });

  const greedy = async (messages: ChatMessage[], n: number) => {
    const ids = tok.apply_chat_template(messages, { add_generation_prompt: true, return_dict: false }) as number[];
    const out = (await model.generate([ids], { max_new_tokens: n, eos_token_id: null })).tolist() as number[][];
    return tok.decode(out[0]!.slice(ids.length));
  };
  const set = async (id: string, value: string) => {
    await page.$eval(`#${id}`, (el, v) => ((el as HTMLInputElement).value = v), value);
  };
  const send = async (text: string) => {
    await page.type("#prompt", text);
    await page.click("#send");
  };
  /** The assistant bubbles once none is streaming: their text and state. */
  const replies = async () => {
    await page.waitForFunction(() => !document.querySelector('.assistant[data-state="streaming"]'));
    return page.$$eval(".assistant", (els) =>
      els.map((e) => ({ text: e.textContent, state: e.getAttribute("data-state") })),
    );
  };

  test("three turns equal generate() on the conversation; stop; regenerate; a refused request", async () => {
    await page.goto(`${server.url}/`);
    // without the key the page says so; with it, it shows the model
    await page.waitForFunction(() => document.getElementById("error")!.textContent!.includes("API key"));
    await set("api-key", KEY);
    await page.$eval("#api-key", (el) => el.dispatchEvent(new Event("change")));
    await page.waitForFunction(() => document.getElementById("model")!.textContent === "page-tiny");
    await set("temperature", "0");
    await set("max-tokens", "8");

    const conversation: ChatMessage[] = [];
    for (const [i, text] of ["Hello there", "How are you?", "Tell me more."].entries()) {
      await send(text);
      conversation.push({ role: "user", content: text });
      const got = await replies();
      const expected = await greedy(conversation, 8);
      expect(got.length).toBe(i + 1);
      expect(got[i]).toEqual({ text: expected, state: "done" });
      conversation.push({ role: "assistant", content: expected });
    }
    const users = await page.$$eval(".user", (els) => els.map((e) => e.textContent));
    expect(users).toEqual(["Hello there", "How are you?", "Tell me more."]);

    // regenerate: the last reply again (greedy, so the same text), still three turns
    await page.click("#regenerate");
    const again = await replies();
    expect(again.length).toBe(3);
    expect(again[2]!.text).toBe(conversation[5]!.content);

    // a long reply stopped mid-stream: the page keeps what came and marks it; the server cancels the request
    await set("max-tokens", "900");
    await send("Go on for a long time.");
    await page.waitForFunction(() => {
      const last = [...document.querySelectorAll(".assistant")].pop();
      return last && last.getAttribute("data-state") === "streaming" && last.textContent!.length > 0;
    });
    await page.click("#stop");
    const stopped = await replies();
    expect(stopped.length).toBe(4);
    expect(stopped[3]!.state).toBe("stopped");
    expect(stopped[3]!.text!.length).toBeGreaterThan(0);
    for (let k = 0; k < 100 && server.manager.running > 0; k++) await new Promise((r) => setTimeout(r, 20));
    expect(server.manager.running).toBe(0);

    // a request the server refuses (past the context): its message on the page, the conversation unchanged
    await set("max-tokens", "5000");
    await send("One more?");
    await page.waitForFunction(() => document.getElementById("error")!.textContent!.length > 0);
    expect(await page.$eval("#error", (e) => e.textContent)).toMatch(/maximum context length/);
    expect((await replies()).length).toBe(4);
    expect(await page.$eval("#send", (b) => (b as HTMLButtonElement).disabled)).toBe(false);
  }, 120_000);
});
