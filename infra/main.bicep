// insights-mover on Azure Functions Flex Consumption, the azd way: this file creates the resource group
// (subscription scope, like Microsoft's Flex Consumption templates) and deploys resources.bicep into it.
// Deploy with `azd up` (azure.yaml) or `az deployment sub create -l <region> -f infra/main.bicep` (docs/deploy.md).
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Parameters (every one but resourceGroupName is passed to resources.bicep unchanged)
// ---------------------------------------------------------------------------------------------
@minLength(1)
@maxLength(32)
@description('Environment name (azd sets it). Part of every resource name; keep it stable across upgrades so the same state account (and ledger) is reused.')
param environmentName string

@description('Region of the resource group and every resource. Must offer Flex Consumption (`az functionapp list-flexconsumption-locations`). Default: the deployment\'s location (`az deployment sub create -l`).')
@metadata({ azd: { type: 'location' } })
param location string = deployment().location

@description('Resource group to create (or reuse). Empty: rg-<environmentName>. Give the name of an existing group to upgrade a deployment that went into it.')
param resourceGroupName string = ''

@allowed(['3.11', '3.12', '3.13'])
@description('Python version of the function app (requirements.txt pins azure-functions 2.x for 3.13).')
param pythonVersion string = '3.11'

// Flex Consumption accepts 40 to 1000 (the anchors' bounds); values below 40 were taken only in a few preview regions.
@minValue(40)
@maxValue(1000)
@description('Most on-demand instances per function group: Flex Consumption scales each function (timer, queue worker) on its own and the HTTP functions as one group, each up to this bound; always-ready instances come on top.')
param maximumInstanceCount int = 40

@description('Spread instances over availability zones (only in regions where Flex Consumption offers it).')
param zoneRedundant bool = false

@allowed([512, 2048, 4096])
@description('Memory per instance (MB). 2048 fits a window of wide rows with the default batch sizes (docs/performance.md).')
param instanceMemoryMB int = 2048

@description('Always-ready instances per function or group, e.g. [{ name: \'function:mover_worker\', instanceCount: 1 }]. Empty: scale from zero.')
param alwaysReady array = []

@description('The pipelines document ({"pipelines": [...]}) set as MOVER_PIPELINES. Default: infra/pipelines.json, read when the template is compiled; a parameters file may give the object instead.')
param pipelines object = loadJsonContent('pipelines.json')

@description('NCRONTAB (with seconds) of the timer that plans and moves due windows (MOVER_SCHEDULE).')
param schedule string = '0 */5 * * * *'

@description('Name of an existing storage account for the moved telemetry. Empty: a new sink account is created in the deployment\'s resource group.')
param existingSinkAccountName string = ''

@description('Resource group of the existing sink account (same subscription as the deployment). Empty: the deployment\'s resource group.')
param existingSinkResourceGroup string = ''

@description('Blob containers created on the sink account; every `container` of a sink in the pipelines must be listed.')
param sinkContainers array = ['telemetry']

@description('New sink account only: hierarchical namespace (ADLS Gen2) for Spark/Synapse/Fabric readers.')
param sinkHierarchicalNamespace bool = false

@description('Resource IDs of the Application Insights resources the pipelines query (app_insights sources): the identity gets Monitoring Reader on each. Any subscription; the deployer needs rights to assign roles there.')
param appInsightsResourceIds array = []

@description('Resource IDs of the Log Analytics workspaces the pipelines query (log_analytics sources): the identity gets Log Analytics Reader on each.')
param logAnalyticsWorkspaceIds array = []

@description('Resource IDs of storage accounts holding exported blobs (continuous_export / diagnostic_settings sources): the identity gets Storage Blob Data Reader on each.')
param exportStorageAccountIds array = []

@description('Alert when a pipeline lags more than this many seconds behind (mover.lag).')
param lagAlertThresholdSeconds int = 7200

@description('E-mail address for alert notifications. Empty: the alert rules fire without an action group.')
param alertEmail string = ''

@description('Entra-only ingestion into the app\'s own Application Insights: the host and the app\'s exporter both send with the identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING and Monitoring Metrics Publisher). false also accepts the instrumentation key.')
param appInsightsDisableLocalAuth bool = true

@description('Create the identity\'s role assignments (state, sink, own telemetry, sources). false: the deployer needs no right to assign roles, and an administrator grants the roles by hand (docs/deploy.md) — never both for the same role and scope, or Azure answers RoleAssignmentExists.')
param assignRoles bool = true

@description('More app settings, added to the template\'s (e.g. {"MOVER_MAX_CONCURRENCY": "8"}); do not repeat a setting the template sets.')
param extraAppSettings object = {}

@description('Name of the user-assigned identity. Empty: id-mover-<token>. Give a new name to rotate to a new identity (docs/deploy.md).')
param identityName string = ''

@description('Tags on every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// Resource group and everything in it
// ---------------------------------------------------------------------------------------------
// azd finds the group of an environment by its azd-env-name tag.
resource rg 'Microsoft.Resources/resourceGroups@2024-11-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: union(tags, { 'azd-env-name': environmentName })
}

module resources 'resources.bicep' = {
  name: 'insights-mover'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    zoneRedundant: zoneRedundant
    instanceMemoryMB: instanceMemoryMB
    alwaysReady: alwaysReady
    pipelines: pipelines
    schedule: schedule
    existingSinkAccountName: existingSinkAccountName
    existingSinkResourceGroup: existingSinkResourceGroup
    sinkContainers: sinkContainers
    sinkHierarchicalNamespace: sinkHierarchicalNamespace
    appInsightsResourceIds: appInsightsResourceIds
    logAnalyticsWorkspaceIds: logAnalyticsWorkspaceIds
    exportStorageAccountIds: exportStorageAccountIds
    lagAlertThresholdSeconds: lagAlertThresholdSeconds
    alertEmail: alertEmail
    appInsightsDisableLocalAuth: appInsightsDisableLocalAuth
    assignRoles: assignRoles
    extraAppSettings: extraAppSettings
    identityName: identityName
    tags: tags
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment; `az deployment sub show` prints them)
// ---------------------------------------------------------------------------------------------
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = resources.outputs.AZURE_FUNCTION_NAME
output STATUS_URL string = resources.outputs.STATUS_URL
output REPLAY_URL string = resources.outputs.REPLAY_URL
output IDENTITY_CLIENT_ID string = resources.outputs.IDENTITY_CLIENT_ID
output IDENTITY_PRINCIPAL_ID string = resources.outputs.IDENTITY_PRINCIPAL_ID
output STATE_ACCOUNT_NAME string = resources.outputs.STATE_ACCOUNT_NAME
output SINK_ACCOUNT_NAME string = resources.outputs.SINK_ACCOUNT_NAME
output APPLICATION_INSIGHTS_NAME string = resources.outputs.APPLICATION_INSIGHTS_NAME
