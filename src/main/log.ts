/**
 * The node's logger, by config.log_format: `json` is pino's own line (epoch-ms `time`, numeric
 * `level`: what existing log pipelines parse), `json-iso` the same object with an ISO 8601
 * `time` and the level's name (what Loki / ELK expect), `pretty` pino-pretty for a terminal.
 */
import { pino, type Logger } from "pino";
import type { LogFormat } from "./config.js";

export function createLogger(level: string, format: LogFormat): Logger {
  switch (format) {
    case "pretty":
      return pino({ level }, pino.transport({ target: "pino-pretty" }));
    case "json-iso":
      return pino({ level, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } });
    case "json":
      return pino({ level });
  }
}
