"""Unit tests of the lab tool's pure logic: inventory validation, names, mirrors, rule parsing."""

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
