"""The template against Flex Consumption's rules and Microsoft's own Flex Consumption templates.

No Bicep compiler can be installed here (docs/deploy.md, "Verified against"), so these tests hold
the points where a template that reads well still fails on its first deployment: properties
Flex Consumption rejects, the instance-count bounds, alert rules on a new workspace, the azd
shape (subscription scope, outputs) and the Python versions the app can run on.
"""

from __future__ import annotations

import json
import re
import tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.infra import bicep

# Site configuration properties Flex Consumption does not take. From the "Flex Consumption plan
# deprecations" table of the Functions app-settings reference, and from ARM's own refusal
# ("The following list of 4 site configuration properties (Site.SiteConfig.FtpsState,
# Site.SiteConfig.Use32BitWorkerProcess, Site.SiteConfig.NetFrameworkVersion,
# Site.SiteConfig.FunctionsRuntimeScaleMonitoringEnabled) for Flex Consumption sites is invalid").
FLEX_REJECTED_SITE_CONFIG = {
    "alwaysOn": "not valid on Flex Consumption",
    "ftpsState": "FTPS not supported; ARM rejects it",
    "functionAppScaleLimit": "renamed functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
    "functionsRuntimeScaleMonitoringEnabled": "ARM rejects it",
    "isXenon": "not valid",
    "javaVersion": "replaced by functionAppConfig.runtime.version",
    "linuxFxVersion": "replaced by functionAppConfig.runtime",
    "netFrameworkVersion": "replaced by functionAppConfig.runtime.version; ARM rejects it",
    "powerShellVersion": "replaced by functionAppConfig.runtime.version",
    "preWarmedInstanceCount": "replaced by functionAppConfig.scaleAndConcurrency.alwaysReady",
    "use32BitWorkerProcess": "32-bit not supported; ARM rejects it",
    "windowsFxVersion": "not valid",
}
# Site properties of the same table.
FLEX_REJECTED_SITE_PROPERTIES = {"containerSize": "renamed instanceMemoryMB", "isXenon": "not valid"}
# App settings of the same table: each moved into functionAppConfig or is set by the platform.
FLEX_REJECTED_APP_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_NODE_DEFAULT_VERSION",
}
# What the anchor templates (docs/deploy.md, "Verified against") set on a Flex Consumption site.
ANCHOR_SITE_CONFIG = {
    "appSettings": "azure-functions-flex-consumption-samples IaC/bicep core/host/function.bicep",
    "minTlsVersion": "azure-quickstart-templates function-app-flex-managed-identities main.bicep",
}
ANCHOR_SITE_PROPERTIES = {
    "serverFarmId": "all anchors",
    "httpsOnly": "quickstart main.bicep; AVM avm/res/web/site",
    "publicNetworkAccess": "AVM avm/res/web/site",
    "siteConfig": "all anchors",
    "functionAppConfig": "all anchors",
}


def site() -> str:
    sites = bicep.resources(bicep.RESOURCES, "Microsoft.Web/sites")
    assert list(sites) == ["app"], f"expected one function app in resources.bicep, found {list(sites)}"
    return sites["app"]


def member(block: str, key: str) -> str:
    """The ``{ ... }`` value of ``key:`` inside ``block``."""
    m = re.search(rf"^\s*{key}: \{{", block, re.MULTILINE)
    assert m, f"no `{key}: {{` in {block[:200]!r}"
    return bicep.block_at(block, m.end() - 1)


def test_site_config_holds_nothing_flex_consumption_rejects() -> None:
    config = bicep.object_keys(member(member(site(), "properties"), "siteConfig"))
    assert config, "the site has no siteConfig keys: the parser is broken"
    rejected = {k.lower(): why for k, why in FLEX_REJECTED_SITE_CONFIG.items()}
    bad = {k: rejected[k.lower()] for k in config if k.lower() in rejected}
    assert not bad, f"Flex Consumption rejects these siteConfig properties: {bad}"
    assert set(config) <= set(ANCHOR_SITE_CONFIG), (
        f"siteConfig sets {sorted(set(config) - set(ANCHOR_SITE_CONFIG))}, which no anchor template sets on a "
        "Flex Consumption site; check it against the Flex Consumption docs, then add it to ANCHOR_SITE_CONFIG"
    )


def test_site_properties_are_the_anchors() -> None:
    properties = bicep.object_keys(member(site(), "properties"))
    assert not {k for k in properties if k.lower() in {r.lower() for r in FLEX_REJECTED_SITE_PROPERTIES}}
    assert set(properties) <= set(ANCHOR_SITE_PROPERTIES), sorted(set(properties) - set(ANCHOR_SITE_PROPERTIES))
    assert {"serverFarmId", "siteConfig", "functionAppConfig"} <= set(properties)


def test_no_rejected_property_anywhere_in_the_templates() -> None:
    """Not in a module, a config child resource or a comment-free corner either."""
    names = {k.lower() for k in FLEX_REJECTED_SITE_CONFIG}
    for path in bicep.bicep_files():
        keys = re.findall(r"^\s*([A-Za-z0-9_]+)\s*:", bicep.strip_comments(path.read_text("utf-8")), re.MULTILINE)
        assert not [k for k in keys if k.lower() in names], f"{path.name}: {[k for k in keys if k.lower() in names]}"


def test_no_app_setting_flex_consumption_moved_elsewhere() -> None:
    assert not set(bicep.app_settings()) & FLEX_REJECTED_APP_SETTINGS


def test_function_app_config_is_the_flex_shape() -> None:
    config = member(member(site(), "properties"), "functionAppConfig")
    assert bicep.object_keys(config) == ["deployment", "scaleAndConcurrency", "runtime"]
    assert set(bicep.object_keys(member(config, "scaleAndConcurrency"))) <= {
        "maximumInstanceCount",
        "instanceMemoryMB",
        "alwaysReady",
    }
    runtime = member(config, "runtime")
    assert "name: 'python'" in runtime and "version: pythonVersion" in runtime
    storage = member(member(config, "deployment"), "storage")
    assert "type: 'blobContainer'" in storage and "type: 'UserAssignedIdentity'" in storage
    plans = bicep.resources(bicep.RESOURCES, "Microsoft.Web/serverfarms")
    [plan] = plans.values()
    assert "sku: { name: 'FC1', tier: 'FlexConsumption' }" in plan and "reserved: true" in plan
    assert "kind: 'functionapp,linux'" in site()


def test_instance_count_has_the_flex_consumption_bounds() -> None:
    for path in (bicep.MAIN,):
        param = bicep.params(path)["maximumInstanceCount"]
        assert param.decorator("minValue") == "40", f"{path.name}: Flex Consumption's lowest maximum is 40"
        assert param.decorator("maxValue") == "1000", path.name
        assert param.default is not None and 40 <= int(param.default) <= 1000
        description = param.decorator("description") or ""
        assert "per function group" in description and "always-ready" in description
    rows = {r[0].strip("`"): r for r in bicep.markdown_table(bicep.DEPLOY_DOC.read_text("utf-8"), PARAM_HEADER)}
    meaning = rows["maximumInstanceCount"][2]
    assert "40" in meaning and "1000" in meaning and "per function group" in meaning, meaning


def test_alert_rules_survive_a_new_workspace() -> None:
    components = bicep.resources(bicep.RESOURCES, "Microsoft.Insights/components")
    [component] = components
    rules = bicep.resources(bicep.RESOURCES, "Microsoft.Insights/scheduledQueryRules")
    assert len(rules) == 2, list(rules)
    for name, body in rules.items():
        assert re.search(r"^\s+skipQueryValidation: true$", body, re.MULTILINE), f"{name}: no skipQueryValidation"
        depends = re.search(r"^\s+dependsOn: \[([^\]]*)\]", body, re.MULTILINE)
        assert depends and component in depends.group(1).replace(",", " ").split(), f"{name}: not after {component}"
        assert "AppMetrics" in body


# --- azd conventions -------------------------------------------------------------------------

PARAM_HEADER = ["parameter", "default", "meaning"]


def test_main_deploys_at_subscription_scope_and_creates_the_resource_group() -> None:
    text = bicep.MAIN.read_text("utf-8")
    assert re.search(r"^targetScope = 'subscription'$", text, re.MULTILINE)
    assert re.search(r"^targetScope = 'resourceGroup'$", bicep.RESOURCES.read_text("utf-8"), re.MULTILINE)
    groups = bicep.resources(bicep.MAIN, "Microsoft.Resources/resourceGroups")
    assert len(groups) == 1
    [(rg, body)] = groups.items()
    assert "'azd-env-name': environmentName" in body, "azd finds the environment's group by this tag"
    [module] = bicep.modules(bicep.MAIN).values()
    assert module.startswith("module resources 'resources.bicep' = {") and f"scope: {rg}" in module
    assert re.findall(r"^output (\w+) ", text, re.MULTILINE)[:3] == [
        "AZURE_LOCATION",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_NAME",
    ]


def test_main_passes_every_parameter_through_unchanged() -> None:
    outer, inner = bicep.params(bicep.MAIN), bicep.params(bicep.RESOURCES)
    assert set(outer) - set(inner) == {"resourceGroupName"}
    assert set(inner) <= set(outer)
    for name, param in inner.items():
        assert param.type == outer[name].type, name
        assert param.default is None, f"resources.bicep: {name} takes main.bicep's default, give it none here"
        assert outer[name].decorator("description"), f"main.bicep: {name} has no @description"
    module = bicep.modules(bicep.MAIN)["resources"]
    passed = dict(re.findall(r"^    (\w+): (.+)$", module, re.MULTILINE))
    assert passed == {name: name for name in inner}, "main.bicep must pass each parameter as `name: name`"
    outputs = set(re.findall(r"^output (\w+) ", bicep.RESOURCES.read_text("utf-8"), re.MULTILINE))
    used = set(re.findall(r"resources\.outputs\.(\w+)", bicep.MAIN.read_text("utf-8")))
    assert outputs == used, f"outputs of resources.bicep not passed on: {sorted(outputs - used)}"


def test_azd_files_point_at_the_template() -> None:
    azure_yaml = (bicep.ROOT / "azure.yaml").read_text("utf-8")
    assert re.search(r"^  path: infra$", azure_yaml, re.MULTILINE) and re.search(r"^  module: main$", azure_yaml, re.M)
    parameters = json.loads((bicep.INFRA / "main.parameters.json").read_text("utf-8"))["parameters"]
    outer = bicep.params(bicep.MAIN)
    assert set(parameters) <= set(outer), sorted(set(parameters) - set(outer))
    required = {name for name, p in outer.items() if p.default is None}
    assert required <= set(parameters), f"azd cannot fill {sorted(required - set(parameters))}"


def test_docs_list_every_parameter_with_its_default() -> None:
    rows = {r[0].strip("`"): r for r in bicep.markdown_table(bicep.DEPLOY_DOC.read_text("utf-8"), PARAM_HEADER)}
    outer = bicep.params(bicep.MAIN)
    assert set(rows) == set(outer), f"docs/deploy.md parameters table vs main.bicep: {set(rows) ^ set(outer)}"
    for name in ("appInsightsDisableLocalAuth", "assignRoles", "pythonVersion", "maximumInstanceCount"):
        assert outer[name].default and outer[name].default.strip("'") in rows[name][1], (name, rows[name][1])


def test_local_auth_is_off_by_default_and_the_app_sends_with_its_identity() -> None:
    assert bicep.param_default("appInsightsDisableLocalAuth") == "true"
    [component] = bicep.resources(bicep.RESOURCES, "Microsoft.Insights/components").values()
    assert "DisableLocalAuth: appInsightsDisableLocalAuth" in component
    settings = bicep.var_block(bicep.RESOURCES.read_text("utf-8"), "appSettings")
    assert (
        "{ name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: "
        "'ClientId=${identity.properties.clientId};Authorization=AAD' }" in settings
    )


# --- Python versions: one truth ----------------------------------------------------------------


def allowed_python() -> list[str]:
    allowed = bicep.params(bicep.MAIN)["pythonVersion"].decorator("allowed")
    assert allowed, "pythonVersion has no @allowed list"
    return re.findall(r"'([0-9.]+)'", allowed)


def requirements() -> list[Requirement]:
    lines = (bicep.ROOT / "requirements.txt").read_text("utf-8").splitlines()
    return [Requirement(line.split("#", 1)[0].strip()) for line in lines if line.split("#", 1)[0].strip()]


def test_every_python_the_template_allows_installs_one_pin_per_package() -> None:
    allowed = allowed_python()
    supported = SpecifierSet(
        tomllib.loads((bicep.ROOT / "pyproject.toml").read_text("utf-8"))["project"]["requires-python"]
    )
    for version in allowed:
        assert version in supported, f"pythonVersion allows {version}, pyproject's requires-python does not"
        pins: dict[str, list[str]] = {}
        for req in requirements():
            if req.marker is None or req.marker.evaluate({"python_version": version}):
                pins.setdefault(req.name.lower(), []).append(str(req.specifier))
        doubled = {name: specs for name, specs in pins.items() if len(specs) != 1}
        assert not doubled, f"Python {version}: more than one pin for {doubled}"
        assert "azure-functions" in pins, f"Python {version}: no azure-functions pin"


def test_every_python_branch_of_the_requirements_is_allowed_and_documented() -> None:
    """A requirements.txt branch that no allowed version takes is dead code the template cannot deploy."""
    allowed = allowed_python()
    minors = [f"3.{n}" for n in range(8, 20)]
    for req in requirements():
        if req.marker is not None:
            chosen = {v for v in minors if Marker(str(req.marker)).evaluate({"python_version": v})}
            assert chosen & set(allowed), f"{req}: no Python version the template allows installs this line"
    rows = {r[0].strip("`"): r for r in bicep.markdown_table(bicep.DEPLOY_DOC.read_text("utf-8"), PARAM_HEADER)}
    assert all(f"`{v}`" in rows["pythonVersion"][2] for v in allowed), rows["pythonVersion"]


# --- the record of what was compared -------------------------------------------------------------

ANCHORS = (
    "Azure/azure-quickstart-templates",
    "Azure-Samples/azure-functions-flex-consumption-samples",
    "Azure-Samples/functions-quickstart-python-http-azd",
    "Azure/bicep-registry-modules",
)


def test_docs_record_the_anchor_commits_compared() -> None:
    text = bicep.DEPLOY_DOC.read_text("utf-8")
    assert "## Verified against" in text
    section = text.split("## Verified against", 1)[1].split("\n## ", 1)[0]
    for anchor in ANCHORS:
        rows = [line for line in section.splitlines() if line.startswith("|") and anchor in line]
        assert rows, f"docs/deploy.md, Verified against: no row for {anchor}"
        assert all(re.search(r"`[0-9a-f]{40}`", row) for row in rows), f"{anchor}: give the full commit id compared"
    for command in ("az bicep build", "az deployment sub what-if"):
        assert command in section, f"Verified against: say what `{command}` should print"
