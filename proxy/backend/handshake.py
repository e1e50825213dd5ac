"""What a new backend connection says before any client's command: credentials,
protocol, database, name and, on a cluster, READONLY. Replies to these are checked by the
connection (`proxy.backend.connection`): an error kills the link, except for the name."""

from __future__ import annotations


class Handshake:
    """What a new connection says first: credentials, protocol, database, name."""

    __slots__ = ("commands",)

    def __init__(
        self,
        username: str | None,
        password: str | None,
        protocol: int,
        db: int,
        client_name: str = "georedis",
        readonly: bool = False,
    ) -> None:
        cmds: list[tuple[str, list[bytes]]] = []
        if protocol == 3:
            hello = [b"HELLO", b"3"]
            if password is not None:
                hello += [b"AUTH", (username or "default").encode(), password.encode()]
            cmds.append(("HELLO", hello))
        elif password is not None:
            auth = [b"AUTH", password.encode()]
            if username:
                auth.insert(1, username.encode())
            cmds.append(("AUTH", auth))
        if db:
            cmds.append(("SELECT", [b"SELECT", str(db).encode()]))
        cmds.append(("CLIENT SETNAME", [b"CLIENT", b"SETNAME", client_name.encode()]))
        if readonly:
            cmds.append(("READONLY", [b"READONLY"]))
        self.commands = cmds
