"""`make run`: the embedded portal with everything it needs locally.

Serves on 127.0.0.1:$PORT (default 8000) and prints the demo sign-ins.
Ctrl-C stops everything this started.
"""

from __future__ import annotations

import os

import uvicorn

from portal.demo import DEMO_ACCOUNTS, DEMO_PASSWORD


def main() -> None:
    port = int(os.environ.get("PORT") or 8000)
    print(f"\nClinic Portal: http://127.0.0.1:{port}/")
    print(f"Demo sign-ins (password {DEMO_PASSWORD}):")
    for email, role, _name, _locations in DEMO_ACCOUNTS:
        print(f"  {role:<11} {email}")
    print()
    uvicorn.run("portal.asgi:app", host="127.0.0.1", port=port, log_level="info")


if __name__ == "__main__":
    main()
