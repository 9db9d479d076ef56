// {{name}}: a rapidwasm app. It answers "hello" with a greeting.

import { exportApp } from "./rapidwasm.js";

export const app = exportApp({
  handle(msg) {
    if (msg.text.trim().toLowerCase() !== "hello") return false; // not mine
    msg.respond(`Hello, ${msg.connection.identity}!`);
    return true;
  },
});
