"""The terminal chat client (`t-koma chat`): talks to the gateway only over the WebSocket protocol.

Built on prompt_toolkit 3 + rich, as aider is, rather than Textual: a chat is a scrolling transcript, and a line
chat keeps the terminal's own scrollback, selection, copy/paste and search working, prints Markdown answers that
stay in the scrollback after exit, and runs under any pty (pexpect, tmux, ssh) with no full-screen redraws.
prompt_toolkit gives the multi-line editor, key bindings, a bottom toolbar and the inline menus (with a test
harness: pipe input + dummy output); rich renders streaming Markdown (`rich.live`) and panels. Textual would
own the whole screen and need its own scrollback and copy/paste handling.

Modules: `launch` (start-up), `autostart` (find or start the gateway), `connection` (WebSocket, request/reply
by `id`, reconnects), `frames` / `wire` (typed frames, parsing), `selection` / `menus` / `picker` / `catalog`
(provider menu, model picker), `app` / `prompt` / `commands` (the chat loop, input line, slash commands),
`render` / `views` (rich output), `status` (status bar text). See docs/client.md.
"""
