"""Unit tests of the lab tool's pure logic: inventory validation, names, mirrors, rule and mount parsing."""

import copy

import lab
import pytest

VALID = {
    "_meta": {
        "hostvars": {
            "web1": {"ansible_host": "10.231.9.11", "webstack_lab_image": "debian12",
                     "webstack_lab_name": "unit", "webstack_lab_gateway": "10.231.9.1/24"},
            "web2": {"ansible_host": "10.231.9.12", "webstack_lab_image": "debian13",
                     "webstack_lab_name": "unit", "webstack_lab_gateway": "10.231.9.1/24"},
            "db1": {"ansible_host": "10.231.9.21",
                    "webstack_lab_name": "unit", "webstack_lab_gateway": "10.231.9.1/24"},
        }
    }
}


def with_hostvar(host, key, value):
    data = copy.deepcopy(VALID)
    if value is None:
        data["_meta"]["hostvars"][host].pop(key)
    else:
        data["_meta"]["hostvars"][host][key] = value
    return data


def with_lab_var(key, value):
    """The valid inventory with a lab-wide variable set to value on every host."""
    data = copy.deepcopy(VALID)
    for hostvars in data["_meta"]["hostvars"].values():
        hostvars[key] = value
    return data


def test_valid_inventory_gives_sorted_hosts_with_default_image():
    result = lab.lab_from_inventory_data(VALID)
    assert result.name == "unit"
    assert str(result.gateway) == "10.231.9.1/24"
    assert [(h.name, h.address, h.image) for h in result.hosts] == [
        ("db1", "10.231.9.21", "debian12"),
        ("web1", "10.231.9.11", "debian12"),
        ("web2", "10.231.9.12", "debian13"),
    ]


def test_interface_names_fit_the_kernel_limit_and_are_distinct():
    result = lab.lab_from_inventory_data(VALID)
    names = [result.bridge] + [result.veth(h) for h in result.hosts]
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)
    assert result.netns(result.hosts[0]) == "wsl-unit-db1"
    assert result.machine(result.hosts[0]) == "unit-db1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"_meta": {"hostvars": {}}}, "names no hosts"),
        (with_hostvar("web1", "webstack_lab_name", "other"), "same webstack_lab_name"),
        (with_hostvar("web1", "webstack_lab_gateway", None), "same webstack_lab_gateway"),
        (with_hostvar("web1", "ansible_host", None), "web1: ansible_host is not set"),
        (with_hostvar("web1", "ansible_host", "web1.example"), "is not an IPv4 address"),
        (with_hostvar("web1", "ansible_host", "10.231.8.11"), "is not a free address in 10.231.9.0/24"),
        (with_hostvar("web1", "ansible_host", "10.231.9.1"), "is not a free address"),
        (with_hostvar("web1", "ansible_host", "10.231.9.255"), "is not a free address"),
        (with_hostvar("web1", "ansible_host", "10.231.9.12"), "share ansible_host 10.231.9.12"),
        (with_hostvar("web2", "webstack_lab_image", "centos9"), "webstack_lab_image 'centos9' is not one of"),
    ],
)
def test_bad_inventory_is_refused_naming_the_variable(data, message):
    with pytest.raises(lab.LabError, match=message.replace(".", r"\.").replace("(", r"\(")):
        lab.lab_from_inventory_data(data)


@pytest.mark.parametrize("name", ["Test", "toolongname", "has-dash", "9lab"])
def test_bad_lab_names_are_refused(name):
    with pytest.raises(lab.LabError, match="webstack_lab_name"):
        lab.lab_from_inventory_data(with_lab_var("webstack_lab_name", name))


@pytest.mark.parametrize("gateway", ["10.231.9.0/24", "10.231.9.1/32", "not-an-ip/24"])
def test_bad_gateways_are_refused(gateway):
    with pytest.raises(lab.LabError, match="webstack_lab_gateway"):
        lab.lab_from_inventory_data(with_lab_var("webstack_lab_gateway", gateway))


def test_bad_host_name_is_refused():
    data = copy.deepcopy(VALID)
    data["_meta"]["hostvars"]["Web_1"] = data["_meta"]["hostvars"].pop("web1")
    with pytest.raises(lab.LabError, match="host name 'Web_1'"):
        lab.lab_from_inventory_data(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm\n", "http://mirror.test/debian"),
        ("Types: deb\nURIs: http://mirror.test/debian-security/\n\nTypes: deb\nURIs: http://m.test/debian/\n",
         "http://m.test/debian"),
        ("# comment\ndeb [signed-by=/k.gpg] http://mirror.test/debian bookworm main\n", "http://mirror.test/debian"),
        ("deb http://other.test/ubuntu noble main\n", None),
        ("", None),
    ],
)
def test_mirror_is_read_from_apt_sources(text, expected):
    assert lab.mirror_from_sources(text) == expected


def test_only_rules_with_the_lab_mark_are_selected():
    listing = "\n".join([
        "-P FORWARD ACCEPT",
        '-A FORWARD -i wslb-unit -m comment --comment "webstack-lab:unit" -j ACCEPT',
        '-A FORWARD -i br0 -m comment --comment "someone-else" -j ACCEPT',
        "-A FORWARD -i wslb-unit -j ACCEPT",
        "-A POSTROUTING -s 10.231.9.0/24 ! -o wslb-unit -m comment --comment webstack-lab:unit -j MASQUERADE",
        '-A FORWARD -m comment --comment "webstack-lab:other" -j ACCEPT',
        '-A FORWARD -i wslb-unit2 -m comment --comment "webstack-lab:unit2" -j ACCEPT',
    ])
    assert lab.parse_marked_rules(listing, "webstack-lab:unit") == [
        ["FORWARD", "-i", "wslb-unit", "-m", "comment", "--comment", "webstack-lab:unit", "-j", "ACCEPT"],
        ["POSTROUTING", "-s", "10.231.9.0/24", "!", "-o", "wslb-unit", "-m", "comment", "--comment",
         "webstack-lab:unit", "-j", "MASQUERADE"],
    ]
    assert len(lab.parse_marked_rules(listing, "webstack-lab:")) == 4


def test_a_lab_never_claims_what_a_lab_with_a_longer_name_made():
    assert lab.has_mark("webstack-lab:test", "webstack-lab:test")
    assert lab.has_mark("webstack-lab:test/web1", "webstack-lab:test")
    assert not lab.has_mark("webstack-lab:test2", "webstack-lab:test")
    assert not lab.has_mark("webstack-lab:test2/web1", "webstack-lab:test")
    assert lab.has_mark("webstack-lab:test2/web1", "webstack-lab:")


def test_base_recipe_changes_with_packages(monkeypatch):
    before = lab.base_recipe("debian12")
    monkeypatch.setattr(lab, "BASE_PACKAGES", (*lab.BASE_PACKAGES, "vim"))
    assert lab.base_recipe("debian12") != before
    assert lab.base_recipe("debian13") != lab.base_recipe("debian12")


def test_host_mac_is_fixed_unicast_local_and_distinct():
    result = lab.lab_from_inventory_data(VALID)
    macs = [result.mac(h) for h in result.hosts]
    assert macs == [result.mac(h) for h in lab.lab_from_inventory_data(VALID).hosts]
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert len(mac.split(":")) == 6 and first & 0x02 and not first & 0x01


def test_host_disk_paths_carry_the_lab_and_host_names():
    result = lab.lab_from_inventory_data(VALID)
    web1 = result.host("web1")
    assert result.host_dir(web1) == lab.HOSTS_DIR / "unit" / "web1"
    assert result.root(web1) == lab.HOSTS_DIR / "unit" / "web1" / "root"
    assert result.disk_mark(web1) == "webstack-lab:unit/web1"
    with pytest.raises(lab.LabError, match="'web9' is not part of lab unit"):
        result.host("web9")


MOUNTINFO = "\n".join([
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
    "90 22 254:0 /var/lib/webstack-lab/hosts/test /var/lib/webstack-lab/hosts/test rw shared:50 - ext4 /dev/vda rw",
    "91 90 7:0 / /var/lib/webstack-lab/hosts/test/web1/disk rw shared:51 - ext4 /dev/loop0 rw",
    "92 90 0:60 / /var/lib/webstack-lab/hosts/test/web1/root rw shared:52 - overlay webstack-lab:test/web1 rw",
    "93 22 7:1 / /var/lib/webstack-lab/hosts/test2/web1/disk rw - ext4 /dev/loop1 rw",
    r"94 22 7:2 / /var/lib/webstack-lab/hosts/test/we\040b/disk rw - ext4 /dev/loop2 rw",
    "95 22 0:61 / /var/lib/webstack-lab/hosts/testx rw - tmpfs tmpfs rw",
])


def test_a_lab_unmounts_its_own_mounts_latest_first_and_never_a_longer_named_labs():
    top = lab.Path("/var/lib/webstack-lab/hosts/test")
    assert lab.parse_mounts_under(MOUNTINFO, top) == [
        "/var/lib/webstack-lab/hosts/test/we b/disk",
        "/var/lib/webstack-lab/hosts/test/web1/root",
        "/var/lib/webstack-lab/hosts/test/web1/disk",
        "/var/lib/webstack-lab/hosts/test",
    ]
    every_lab = lab.parse_mounts_under(MOUNTINFO, lab.Path("/var/lib/webstack-lab/hosts"))
    assert "/var/lib/webstack-lab/hosts/test2/web1/disk" in every_lab and len(every_lab) == 6


@pytest.mark.parametrize(("text", "expected"), [("16G", 16 << 30), ("512m", 512 << 20), ("4096", 4096)])
def test_disk_sizes_are_parsed(text, expected):
    assert lab.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "16GB", "-1G", "1.5G"])
def test_bad_disk_sizes_are_refused(text):
    with pytest.raises(lab.LabError, match="WEBSTACK_LAB_DISK_SIZE"):
        lab.parse_size(text)


def test_overlay_options_refuse_paths_overlayfs_would_split():
    path = lab.Path
    assert lab.overlay_options(path("/b"), path("/u"), path("/w")) == "lowerdir=/b,upperdir=/u,workdir=/w"
    with pytest.raises(lab.LabError, match="cannot contain"):
        lab.overlay_options(path("/b,x"), path("/u"), path("/w"))
    with pytest.raises(lab.LabError, match="cannot contain"):
        lab.overlay_options(path("/b"), path("/u:x"), path("/w"))
