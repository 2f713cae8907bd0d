"""The device link: live links to devices, and the one seam every call to a device crosses.

`link.Link` is one device's stream (its calls in flight, correlated by call id);
`registry.LinkRegistry` holds this process's live links; `router.DeviceRouter` is the
interface through which every call reaches a device (docs/device-link.md).
"""
