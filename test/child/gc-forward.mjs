// Child process of test/lifetimes.test.ts: forward calls whose tensors are never disposed; prints RSS samples.
const [, , distIndex, dir, nArg] = process.argv;
const { GPT2LMHeadModel } = await import(distIndex);
const m = await GPT2LMHeadModel.from_pretrained(dir);
const N = Number(nArg);
const samples = [];
for (let i = 0; i < N; i++) {
  await m.forward({ input_ids: [[464, 3290, 318]] }); // logits left to the garbage collector
  if (i % (N / 10) === N / 10 - 1) samples.push(process.memoryUsage().rss);
}
console.log(JSON.stringify(samples));
