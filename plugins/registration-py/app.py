"""RapidSMS's contrib ``registration`` app, in Python.

``REGISTER <name>`` (or ``REG``, ``JOIN``) creates a contact called <name>,
links the sender's connection to it and answers "Thank you for registering,
<name>!". A bare keyword gets the help text.
"""

import rapidwasm

HELP = "To register, send JOIN <NAME>"


class Registration(rapidwasm.AppBase):
    def handle(self, msg):
        name = rapidwasm.keyword("register|reg|join", msg.text)
        if name is None:
            return False
        if not name:
            msg.respond(HELP)
            return True
        rapidwasm.register_contact(msg.connection, name)
        rapidwasm.log.info(f"registered {name}")
        msg.respond(f"Thank you for registering, {name}!")
        return True


App = rapidwasm.export(Registration)
