// Names for the server's types, generated from its OpenAPI document (schema.d.ts is
// made by `npm run types` from openapi.json, which `botwatch openapi` prints; CI fails
// when either differs from what the server says).

import type { components } from './schema';

type S = components['schemas'];
export type BotItem = S['BotItem'];
export type BucketItem = S['BucketItem'];
export type DialogItem = S['DialogItem'];
export type DialogsAnswer = S['DialogsAnswer'];
export type HistoryAnswer = S['HistoryAnswer'];
export type Message = S['Message'];
export type Attachment = S['Attachment'];
export type Card = S['Card'];
export type CardButton = S['Button'];
export type Delivery = S['Delivery'];
export type HandoffView = S['HandoffView'];
export type Overview = S['Overview'];
export type SessionInfo = S['SessionInfo'];
export type SettingsDoc = S['SettingsDoc'];
export type StatsAnswer = S['StatsAnswer'];
export type StatsFrame = S['StatsFrame'];
export type TopItem = S['TopItem'];
export type UserItem = S['UserItem'];
export type UsersAnswer = S['UsersAnswer'];
export type DialogsSnapshot = S['DialogsSnapshot'];
export type AlertsSnapshot = S['AlertsSnapshot'];
export type DialogDelta = S['DialogDelta'];
export type DialogSnapshot = S['DialogSnapshot'];
export type DataLossItem = S['DataLossItem'];
export type MessageDelta = S['MessageDelta'];
export type DeliveryDelta = S['DeliveryDelta'];
export type OperatorMessage = S['OperatorMessage'];
export type FacetsItem = S['FacetsItem'];
export type ProfileAnswer = S['ProfileAnswer'];
export type UserPatch = S['UserPatch'];
export type LabelItem = S['LabelItem'];
export type BulkRequest = S['BulkRequest'];
export type BulkSet = S['BulkSet'];
export type BulkAnswer = S['BulkAnswer'];
export type BroadcastItem = S['BroadcastItem'];
export type BroadcastRequest = S['BroadcastRequest'];
export type BroadcastCreated = S['BroadcastCreated'];
export type BroadcastsSnapshot = S['BroadcastsSnapshot'];
export type BroadcastDelta = S['BroadcastDelta'];
export type BroadcastFailure = S['Failure'];
export type Audience = S['Audience'];
export type Integrations = S['Integrations'];
export type IntegrationsAnswer = S['IntegrationsAnswer'];
export type IntegrationStatus = S['IntegrationStatus'];
export type TestAnswer = S['TestAnswer'];
