// A small corpus of movie-review-style text that torchlm generates itself (seeded), in IMDB's schema
// (text, label), for running the tutorial where the real IMDB data cannot be downloaded.
import { seededRandom } from "../lib/datasets.js";

const TITLES = [
  "The Last Harbor",
  "Midnight Express Lane",
  "A Quiet Summer",
  "Iron Valley",
  "The Glass Garden",
  "Northern Lights",
  "Shadows of Rome",
  "The Long Road Home",
  "Paper Moon Rising",
  "Cold Signal",
  "The Silent Orchard",
  "Blue River",
  "Night Shift",
  "The Forgotten Crown",
  "Winter in Paris",
  "Lost Frequencies",
];
const ASPECTS = [
  "acting",
  "story",
  "script",
  "soundtrack",
  "cinematography",
  "direction",
  "ending",
  "pacing",
  "cast",
  "dialogue",
];
const POS_ADJ = [
  "brilliant",
  "wonderful",
  "moving",
  "superb",
  "charming",
  "gripping",
  "beautiful",
  "excellent",
  "powerful",
  "delightful",
];
const NEG_ADJ = [
  "terrible",
  "boring",
  "awful",
  "weak",
  "dull",
  "predictable",
  "clumsy",
  "painful",
  "forgettable",
  "messy",
];
const POS_OPEN = [
  "I loved this movie.",
  "What a great film.",
  "This is one of the best films I have seen this year.",
  "I was pleasantly surprised by this movie.",
];
const NEG_OPEN = [
  "I really wanted to like this movie.",
  "What a waste of time.",
  "This is one of the worst films I have seen this year.",
  "I was disappointed by this movie.",
];
const POS_CLOSE = [
  "I would happily watch it again.",
  "Highly recommended.",
  "Ten out of ten.",
  "Go and see it with your friends.",
];
const NEG_CLOSE = [
  "I would not watch it again.",
  "Not recommended.",
  "Two out of ten.",
  "Save your money and stay home.",
];
const MIDDLE = [
  "The {a} was {j} and the {b} was {k}.",
  "The {a} is {j}, and the {b} feels {k}.",
  "Honestly, the {a} was {j}.",
  "The {b} was {k} from start to finish.",
  "Even the {a} felt {j}.",
];

/** `n` reviews, half positive (label 1) and half negative (label 0), sorted by label as IMDB's train split is. */
export function movieReviews(n: number, seed = 0): { text: string[]; label: number[] } {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const rows: { text: string; label: number }[] = [];
  for (let i = 0; i < n; i++) {
    const label = i < n / 2 ? 0 : 1;
    const adj = label ? POS_ADJ : NEG_ADJ;
    const parts = [pick(label ? POS_OPEN : NEG_OPEN), `I watched ${pick(TITLES)} last weekend.`];
    const count = 2 + Math.floor(rnd() * 2);
    for (let k = 0; k < count; k++) {
      parts.push(
        pick(MIDDLE)
          .replace("{a}", pick(ASPECTS))
          .replace("{b}", pick(ASPECTS))
          .replace("{j}", pick(adj))
          .replace("{k}", pick(adj)),
      );
    }
    parts.push(pick(label ? POS_CLOSE : NEG_CLOSE));
    rows.push({ text: parts.join(" "), label });
  }
  return { text: rows.map((r) => r.text), label: rows.map((r) => r.label) };
}
