/**
 * The Deno versions this project runs on. Some versions abort inside nghttp2 when a `node:http2`
 * session receives a GOAWAY, which every graceful server stop sends (denoland/deno#36788);
 * `lib/runtime/http2_goaway_fix.ts` works around it, and where it cannot be put in place an entry on
 * one of those versions refuses to start.
 *
 * @module
 */
import { GOAWAY_FIX_APPLIED } from "./http2_goaway_fix.ts";

/** The Deno the project is pinned to (`.ci/run`, the README's and docs' commands). */
export const PINNED_DENO_VERSION = "2.9.6";

/** The last version without the GOAWAY crash. */
const LAST_VERSION_WITHOUT_CRASH = "2.9.3";

/** Versions that crash on a GOAWAY unless `lib/runtime/http2_goaway_fix.ts` is in place, and why. */
const CRASH_ON_GOAWAY: Record<string, string> = {
  "2.9.4": "denoland/deno#36788",
  "2.9.5": "denoland/deno#36788",
  "2.9.6": "denoland/deno#36788",
};

/**
 * Why `version` cannot run `task` (one line naming the version to use and the command), or
 * `undefined` when it can.
 */
export function denoVersionProblem(
  version: string,
  task: string,
  goawayFixApplied = GOAWAY_FIX_APPLIED,
): string | undefined {
  const issue = CRASH_ON_GOAWAY[version];
  if (issue === undefined || goawayFixApplied) return undefined;
  return `Cannot start ${task} on Deno ${version}, which aborts when a gRPC server closes a ` +
    `connection gracefully (GOAWAY, ${issue}) and here cannot be worked around: run it on Deno ` +
    `${LAST_VERSION_WITHOUT_CRASH}, as 'npx --yes deno@${LAST_VERSION_WITHOUT_CRASH} task ${task}'`;
}
