"""Side commands of `georedis`: the demo and generate-configs (alert rules, dashboards).

Top layer beside workers: may import anything below; nothing in the server imports it.
"""
