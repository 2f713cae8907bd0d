"""The `thingwire` command's entry point: sends `agent` to the device side, the rest to the cloud.

See `thingwire_cli.main`.
"""
