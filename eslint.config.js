// ESLint (flat config): JavaScript's and typescript-eslint's recommended rules over the TypeScript and the scripts.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  {
    ignores: [
      "dist/",
      "build/",
      "build-*/",
      "node_modules/",
      ".venv*/",
      ".cache/",
      "bench/.peers/",
      "bench/.weights/",
      "bench/peer/",
      "bench/results/",
      "imdb_gpt2/",
      "output/",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // Datasets' rows and BatchEncoding are as dynamic as Python's (`map((row) => ...)` takes any column); the rest
      // of the code is strict TypeScript.
      "@typescript-eslint/no-explicit-any": "off",
      // Prettier wraps code at 120 columns but not strings and comments; this holds them to the same width.
      "max-len": ["error", { code: 120, ignoreUrls: true }],
      // `_` names what a destructuring or a callback must take but does not use
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" },
      ],
    },
  },
  {
    files: ["test/**/*.ts"],
    languageOptions: { globals: { ...globals.jest } },
  },
);
