"""The device side of thingwire: the agent that keeps a device's link to the cloud.

`device_agent.agent.Agent` is the public API (docs/device-link.md, "The agent").
"""
