"""The option checks every command makes before any weights load.

`common` checks what every command takes (prompt, seed, output, mode, size) and reads input media,
`runtime` how it runs (device, precision, offload, the speed levers), `limits` the numbers' bounds
and `memory` whether the request fits the machine. Each family's request rules live in its own folder
and use these; `vidgen.app.prepare` puts them together into a Plan.
"""
