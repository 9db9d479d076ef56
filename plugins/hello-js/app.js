// A JavaScript app: answers "hello" with a greeting that counts visits,
// kept in the app's storage.

import { exportApp, keyword, storage } from "./rapidwasm.js";

let greeting = "Hello";

export const app = exportApp({
  configure(settings) {
    greeting = settings.greeting ?? "Hello";
  },

  handle(msg) {
    const rest = keyword("hello|hi", msg.text);
    if (rest === null) return false;
    const who = msg.connection.identity;
    const visits = Number(storage.get(`visits/${who}`) ?? "0") + 1;
    storage.set(`visits/${who}`, String(visits));
    msg.respond(`${greeting}, ${who}! (visit ${visits})`);
    return true;
  },
});
