"""{{name}}: a rapidwasm app. It answers "hello" with a greeting."""

import rapidwasm


class Hello(rapidwasm.AppBase):
    def handle(self, msg):
        if msg.text.strip().lower() != "hello":
            return False  # not mine: let the next app try
        msg.respond(f"Hello, {msg.connection.identity}!")
        return True


App = rapidwasm.export(Hello)
