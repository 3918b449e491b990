// Read access for the mover's identity on one source, deployed into the source's own resource group
// (and subscription): Monitoring Reader on an Application Insights resource, Log Analytics Reader on a
// workspace, or Storage Blob Data Reader on an account holding exported blobs.
targetScope = 'resourceGroup'

@allowed(['appInsights', 'logAnalytics', 'exportStorage'])
@description('What the source is.')
param kind string

@description('Name of the source resource in this resource group.')
param resourceName string

@description('Principal (object) ID of the function app\'s user-assigned identity.')
param principalId string

// Built-in role definition IDs (docs/deploy.md, role table).
var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
var logAnalyticsReader = '73c42c96-874c-492b-b04d-ab87d138a893'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource component 'Microsoft.Insights/components@2020-02-02' existing = if (kind == 'appInsights') {
  name: resourceName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = if (kind == 'logAnalytics') {
  name: resourceName
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (kind == 'exportStorage') {
  name: resourceName
}

resource componentReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'appInsights') {
  name: guid(component.id, principalId, monitoringReader)
  scope: component
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource workspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'logAnalytics') {
  name: guid(workspace.id, principalId, logAnalyticsReader)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource exportReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (kind == 'exportStorage') {
  name: guid(account.id, principalId, storageBlobDataReader)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
