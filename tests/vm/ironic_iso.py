#!/usr/bin/env python3
"""Build a node's virtual-media deploy ISO with Ironic's own code.

Run with the Ironic venv's python (tests/e2e/ironic.sh installs it):

  ironic_iso.py --config-file F --config-dir D --node UUID --out ISO \\
      [--param key=value]... [--network-data-json FILE | --network-data-raw FILE]

This is what the redfish-virtual-media boot interface does in
prepare_ramdisk, minus the BMC: image_utils.prepare_deploy_iso(task, params,
"deploy", driver_info) with the node loaded from Ironic's database, the
real noop network interface (its get_node_network_data returns the node's
network_data field, which the API validated against Ironic's schema) and
the redfish boot interface's image publisher settings (kernel parameters
[redfish]kernel_append_params unless the node's driver_info has
kernel_append_params). So the ISO is built by create_boot_iso /
create_isolinux_image_for_bios (mkisofs -r -J -l, label config-2 when there
is network data, publisher = the ir_pub_id it puts on the kernel command
line), holding [agent]api_ca_file and ironic-tls.conf when set, and
openstack/latest/network_data.json.

Data the API would refuse (tests/vm/network.py's broken cases): with
--network-data-json the node's field is replaced in memory (not saved)
before the build; with --network-data-raw the file's bytes go onto the ISO
as they are, in place of Ironic's json.dumps (a truncated file, say).

The published ISO is copied to --out; its kernel command line is printed.
"""

import argparse
import json
import shutil
import sys
import types


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config-file", required=True)
    p.add_argument("--config-dir")
    p.add_argument("--node", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--param", action="append", default=[])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--network-data-json")
    g.add_argument("--network-data-raw")
    a = p.parse_args()

    # the conductor's import order (image_utils alone is a circular import)
    from ironic.conductor import utils as _conductor_utils  # noqa: F401
    from ironic.common import context as ir_context
    from ironic.conf import CONF
    from ironic.drivers.modules import image_utils
    from ironic.drivers.modules.network import noop
    from ironic.drivers.modules.redfish import boot as redfish_boot
    from ironic import objects

    args = ["--config-file", a.config_file]
    if a.config_dir:
        args += ["--config-dir", a.config_dir]
    CONF(args, project="ironic")
    objects.register_all()
    ctx = ir_context.get_admin_context()
    node = objects.Node.get_by_uuid(ctx, a.node)

    network = noop.NoopNetwork()
    if a.network_data_json:
        with open(a.network_data_json) as f:
            node.network_data = json.load(f)
    if a.network_data_raw:
        with open(a.network_data_raw, "rb") as f:
            raw = f.read()
        marker = {"raw": True}
        network = types.SimpleNamespace(
            get_node_network_data=lambda task: marker)
        real_dumps = image_utils.json.dumps

        def dumps(obj, *args, **kwargs):
            if obj is marker:
                return raw.decode("utf-8")
            return real_dumps(obj, *args, **kwargs)

        image_utils.json = types.SimpleNamespace(dumps=dumps)

    boot = types.SimpleNamespace(
        image_publisher_settings=redfish_boot._image_publisher_settings())
    task = types.SimpleNamespace(
        node=node, context=ctx,
        driver=types.SimpleNamespace(boot=boot, network=network))
    params = dict(kv.split("=", 1) for kv in a.param)
    url = image_utils.prepare_deploy_iso(task, params, "deploy",
                                         dict(node.driver_info))
    # a LocalPublisher URL: [deploy]http_url/redfish/boot-<uuid>.iso
    name = url.rsplit("/", 1)[-1]
    src = f"{CONF.deploy.http_root}/redfish/{name}"
    shutil.copyfile(src, a.out)
    print(f"published {url}", file=sys.stderr)


if __name__ == "__main__":
    main()
