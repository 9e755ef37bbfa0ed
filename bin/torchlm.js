#!/usr/bin/env node
// The `torchlm` command: always runs the program, whatever path (a symlink of npm link, workspaces or pnpm) led here.
import { main } from "../dist/lib/cli.js";

await main(process.argv);
