"""What an operator sees: the incident pages (one self-contained HTML file per incident), the
read-only web console the daemon serves at `/`, and the terminal views of `warden status` and
`warden incidents`. Everything here reads the store; nothing here changes it."""
