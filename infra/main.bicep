// insights-mover on Azure Functions Flex Consumption: identity, storage, app, roles, telemetry, alerts.
// Deploy with `azd up` (azure.yaml) or `az deployment group create -g <rg> -f infra/main.bicep` (docs/deploy.md).
// No storage account key is used anywhere: every connection is identity-based (user-assigned identity).
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------
@minLength(1)
@maxLength(32)
@description('Environment name (azd sets it). Part of every resource name; keep it stable across upgrades so the same state account (and ledger) is reused.')
param environmentName string

@description('Region of every resource. Must offer Flex Consumption (`az functionapp list-flexconsumption-locations`).')
param location string = resourceGroup().location

@allowed(['3.11', '3.12'])
@description('Python version of the function app.')
param pythonVersion string = '3.11'

@minValue(1)
@maxValue(1000)
@description('Most instances the app scales out to. Flex Consumption scales each function (timer, HTTP, queue worker) on its own up to this bound.')
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

@description('Name of an existing storage account for the moved telemetry. Empty: a new sink account is created in this resource group.')
param existingSinkAccountName string = ''

@description('Resource group of the existing sink account (same subscription as the deployment).')
param existingSinkResourceGroup string = resourceGroup().name

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

@description('Disable key-based ingestion into the app\'s own Application Insights. Only when every exporter in the app authenticates with the identity (Monitoring Metrics Publisher is granted below); otherwise its metrics, and so the alerts, are lost.')
param appInsightsDisableLocalAuth bool = false

@description('More app settings, added to the template\'s (e.g. {"MOVER_MAX_CONCURRENCY": "8"}); do not repeat a setting the template sets.')
param extraAppSettings object = {}

@description('Name of the user-assigned identity. Empty: id-mover-<token>. Give a new name to rotate to a new identity (docs/deploy.md).')
param identityName string = ''

@description('Tags on every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------
var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, { 'azd-env-name': environmentName })
var appName = 'func-mover-${token}'
var stateAccountName = 'stmover${take(token, 13)}'
var newSinkAccountName = 'snkmover${take(token, 13)}'
var useExistingSink = !empty(existingSinkAccountName)
var sinkAccountName = useExistingSink ? existingSinkAccountName : newSinkAccountName
var deploymentContainer = 'app-package'
var ledgerTable = 'moverledger'
var quarantineContainer = 'mover-quarantine'
// The work queue of the fan-out worker (queue trigger on AzureWebJobsStorage).
var workQueue = 'mover-windows'

// Built-in role definition IDs (the table in docs/deploy.md; tests/infra checks both agree).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var stateRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: empty(identityName) ? 'id-mover-${token}' : identityName
  location: location
  tags: allTags
}

// ---------------------------------------------------------------------------------------------
// State account: runtime (AzureWebJobsStorage), deployment package, ledger, quarantine, work queue
// ---------------------------------------------------------------------------------------------
resource state 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43:The name is computed ('stmover' + 13 characters of uniqueString: lowercase letters and digits, 20 long); the check cannot evaluate it.
  //checkov:skip=CKV_AZURE_206:Runtime state only: the moved data lives in the sink, and a lost ledger is rebuilt by replaying windows (their file names are deterministic).
  //checkov:skip=CKV_AZURE_59:Flex Consumption without a virtual network reaches its storage over public endpoints; every request needs Entra ID (shared keys are off).
  //checkov:skip=CKV_AZURE_35:Same reason as CKV_AZURE_59: a default-deny firewall locks out a function app that is not VNet-integrated.
  name: stateAccountName
  location: location
  tags: allTags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource stateBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: state
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: stateBlobs
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

resource quarantine 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: stateBlobs
  name: quarantineContainer
  properties: { publicAccess: 'None' }
}

resource stateTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: state
  name: 'default'
}

resource ledger 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: stateTables
  name: ledgerTable
}

resource stateQueues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: state
  name: 'default'
}

resource windowsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: stateQueues
  name: workQueue
}

resource stateRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in stateRoles: {
    name: guid(state.id, identity.id, role)
    scope: state
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// ---------------------------------------------------------------------------------------------
// Sink account (new here, or an existing one through the module below)
// ---------------------------------------------------------------------------------------------
module newSink 'modules/new-sink.bicep' = if (!useExistingSink) {
  name: 'mover-new-sink'
  params: {
    accountName: newSinkAccountName
    location: location
    containers: sinkContainers
    hierarchicalNamespace: sinkHierarchicalNamespace
    principalId: identity.properties.principalId
    tags: allTags
  }
}

module existingSink 'modules/existing-sink.bicep' = if (useExistingSink) {
  name: 'mover-existing-sink'
  scope: resourceGroup(existingSinkResourceGroup)
  params: {
    accountName: existingSinkAccountName
    containers: sinkContainers
    principalId: identity.properties.principalId
  }
}

// ---------------------------------------------------------------------------------------------
// Source access (each resource in its own subscription / resource group)
// ---------------------------------------------------------------------------------------------
module appInsightsReader 'modules/source-access.bicep' = [
  for id in appInsightsResourceIds: {
    name: 'mover-src-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      kind: 'appInsights'
      resourceName: last(split(id, '/'))
      principalId: identity.properties.principalId
    }
  }
]

module workspaceReader 'modules/source-access.bicep' = [
  for id in logAnalyticsWorkspaceIds: {
    name: 'mover-src-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      kind: 'logAnalytics'
      resourceName: last(split(id, '/'))
      principalId: identity.properties.principalId
    }
  }
]

module exportReader 'modules/source-access.bicep' = [
  for id in exportStorageAccountIds: {
    name: 'mover-src-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      kind: 'exportStorage'
      resourceName: last(split(id, '/'))
      principalId: identity.properties.principalId
    }
  }
]

// ---------------------------------------------------------------------------------------------
// The app's own telemetry: workspace-based Application Insights (OpenTelemetry metrics land in AppMetrics)
// ---------------------------------------------------------------------------------------------
resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-mover-${token}'
  location: location
  tags: allTags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-mover-${token}'
  location: location
  tags: allTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: appInsightsDisableLocalAuth
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Plan and function app
// ---------------------------------------------------------------------------------------------
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-mover-${token}'
  location: location
  tags: allTags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  //checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is offered in some regions only; turn it on with the zoneRedundant parameter there.
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_17:Client certificates would shut out the callers of /api/replay and /api/status, which authenticate with function keys.
  //checkov:skip=CKV_AZURE_222:/api/replay and /api/status are reached over the internet with a function key; add access restrictions or a VNet where that is not wanted.
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per function; use the alwaysReady parameter for warm instances.
  //checkov:skip=CKV_AZURE_213:No health-check eviction on Flex Consumption: instances are per-execution and scale to zero; the ledger's leases cover a lost instance.
  name: appName
  location: location
  tags: union(allTags, { 'azd-service-name': 'mover' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      appSettings: concat(appSettings, extraSettings)
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${state.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReady
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
  // The host starts with these settings: its identity must already hold its roles.
  dependsOn: [packageContainer, ledger, quarantine, windowsQueue, stateRoleAssignments, newSink, existingSink, telemetryPublisher]
}

// Every setting the engine or the host reads; tests/infra/test_app_settings.py keeps this in step with the code.
var appSettings = [
  // Host storage and the ledger/quarantine account, identity-based (no key).
  { name: 'AzureWebJobsStorage__accountName', value: state.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
  // The sink account: the pipelines' sinks name it with "connection_setting": "SinkStorage".
  { name: 'SinkStorage__accountName', value: sinkAccountName }
  { name: 'SinkStorage__clientId', value: identity.properties.clientId }
  // DefaultAzureCredential (query sources with auth kind `entra`) picks the user-assigned identity.
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
  { name: 'MOVER_PIPELINES', value: string(pipelines) }
  { name: 'MOVER_SCHEDULE', value: schedule }
  { name: 'MOVER_LEDGER_TABLE', value: ledgerTable }
  { name: 'MOVER_QUARANTINE_CONTAINER', value: quarantineContainer }
  // The timer plans and enqueues; the queue-triggered worker (scaled out per function) moves windows.
  { name: 'MOVER_DISPATCH', value: 'queue' }
  { name: 'MOVER_QUEUE_NAME', value: workQueue }
  // The instance size: the per-process byte budget for rows read ahead is derived from it (1/64).
  { name: 'MOVER_INSTANCE_MEMORY_MB', value: string(instanceMemoryMB) }
]
// Parameter values only (known when the deployment starts), so the loop is allowed.
var extraSettings = [for setting in items(extraAppSettings): { name: setting.key, value: string(setting.value) }]

// ---------------------------------------------------------------------------------------------
// Alerts on the app's own metrics (mover.lag gauge, mover.windows.failed counter; attribute `pipeline`)
// ---------------------------------------------------------------------------------------------
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-mover-${token}'
  location: 'Global'
  tags: allTags
  properties: {
    groupShortName: 'mover'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var alertActions = empty(alertEmail) ? {} : { actionGroups: [actionGroup.id] }

resource lagAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-mover-lag-${token}'
  location: location
  tags: allTags
  kind: 'LogAlert'
  properties: {
    displayName: 'insights-mover: pipeline lag'
    description: 'A pipeline is more than ${lagAlertThresholdSeconds} s behind (mover.lag). See /api/status for its failed and missing windows.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: 'AppMetrics | where Name == "mover.lag" | extend pipeline = tostring(Properties["pipeline"]) | extend lag_seconds = todouble(Sum) / iff(ItemCount > 0, todouble(ItemCount), 1.0)'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lag_seconds'
          dimensions: [{ name: 'pipeline', operator: 'Include', values: ['*'] }]
          operator: 'GreaterThan'
          threshold: lagAlertThresholdSeconds
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: alertActions
  }
}

resource failedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-mover-failed-${token}'
  location: location
  tags: allTags
  kind: 'LogAlert'
  properties: {
    displayName: 'insights-mover: failed windows'
    description: 'A window of a pipeline failed (mover.windows.failed). Replay it with POST /api/replay after fixing the cause.'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'AppMetrics | where Name == "mover.windows.failed" | extend pipeline = tostring(Properties["pipeline"]) | extend failed = todouble(Sum)'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failed'
          dimensions: [{ name: 'pipeline', operator: 'Include', values: ['*'] }]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    actions: alertActions
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment; `az deployment group show` prints them)
// ---------------------------------------------------------------------------------------------
output AZURE_FUNCTION_APP_NAME string = app.name
output AZURE_LOCATION string = location
output STATUS_URL string = 'https://${app.properties.defaultHostName}/api/status?format=html'
output REPLAY_URL string = 'https://${app.properties.defaultHostName}/api/replay'
output IDENTITY_CLIENT_ID string = identity.properties.clientId
output IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output STATE_ACCOUNT_NAME string = state.name
output SINK_ACCOUNT_NAME string = sinkAccountName
output APPLICATION_INSIGHTS_NAME string = appInsights.name
